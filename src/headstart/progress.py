"""Progress of the long passes (audit, cache building, feature extraction, validation,
evaluation, prediction), for whoever shows it.

The passes call :func:`report` as they go; nothing happens unless a caller asked to hear it with
:func:`reporting` (the command line draws a bar with count, rate and time left). A context
variable carries the hook, so the many functions between a command and a pass need no extra
argument and library users see nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = ["ProgressHook", "report", "reporting"]

ProgressHook = Callable[[str, int, int], None]
"""Called with a pass's name (e.g. ``"audit"``), the items done so far and the items in all."""

_HOOK: ContextVar[ProgressHook | None] = ContextVar("headstart_progress", default=None)


@contextlib.contextmanager
def reporting(hook: ProgressHook) -> Iterator[None]:
    """While active, :func:`report` calls ``hook`` (in this thread and context)."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


def report(task: str, done: int, total: int) -> None:
    """Tell the hook (if any) that ``done`` of ``total`` items of ``task`` are done."""
    hook = _HOOK.get()
    if hook is not None:
        hook(task, done, total)
