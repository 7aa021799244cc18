"""Console output helpers: the only place that knows about rich."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console

from headstart.processes import secondary_process

_QUIET = secondary_process()  # with several training processes, the first one speaks
out = Console(highlight=False, soft_wrap=True, markup=False, quiet=_QUIET)  # paths may hold [...]
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, quiet=_QUIET)


def epoch_line(row: Mapping[str, Any], total_epochs: int) -> str:
    """One line per epoch: phase, train and val loss/accuracy, time and speed."""
    parts = [
        f"epoch {row['epoch']:>2}/{total_epochs}",
        f"[{row.get('phase', '')}]",
        f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}",
        f"| val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}",
    ]
    if "val_f1" in row:
        parts.append(f"f1 {row['val_f1']:.3f}")
    if "seconds" in row:
        parts.append(f"| {row['seconds']:.1f}s")
    if row.get("images_per_s"):
        parts.append(f"{row['images_per_s']:.0f} img/s")
    return " ".join(parts)


class _WarningLines(logging.Handler):
    """Prints headstart's warnings as ``warning: ...`` lines, except those flagged as notes."""

    def __init__(self, skip_flag: str) -> None:
        super().__init__(logging.WARNING)
        self.skip_flag = skip_flag

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, self.skip_flag, False):
            err.print(f"warning: {record.getMessage()}")


@contextlib.contextmanager
def warnings_as_lines(skip_flag: str) -> Iterator[None]:
    """While active, headstart's log warnings print once each (records with ``skip_flag`` set
    are notes that the command prints itself)."""
    logger = logging.getLogger("headstart")
    handler = _WarningLines(skip_flag)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def new_bar() -> Any:
    """A transient rich progress display on stderr: what, bar, count, rate, time left."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=err, transient=True,
    )  # fmt: skip


class PassBars:
    """Draws the passes that ``headstart.progress.report`` tells of as bars of ``bar`` (started on
    the first report); a pass's bar goes when it is done. Quick passes flash by unseen."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.tasks: dict[str, tuple[Any, float]] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        import time

        if not self.bar.console.is_terminal:  # a log or a pipe: no live display
            return
        if task not in self.tasks:
            if not self.bar.live.is_started:
                self.bar.start()
            self.tasks[task] = (self.bar.add_task(task, total=total, speed=""), time.monotonic())
        key, began = self.tasks[task]
        elapsed = time.monotonic() - began
        rate = f"{done / elapsed:.0f}/s" if elapsed > 0.5 else ""
        self.bar.update(key, completed=done, total=total, speed=rate)
        if done >= total:
            self.bar.remove_task(key)
            del self.tasks[task]


@contextlib.contextmanager
def pass_bars() -> Iterator[None]:
    """While active, long passes (audit, decoding, prediction, ...) show progress bars."""
    from headstart.progress import reporting

    bar = new_bar()
    try:
        with reporting(PassBars(bar)):
            yield
    finally:
        if bar.live.is_started:
            bar.stop()
