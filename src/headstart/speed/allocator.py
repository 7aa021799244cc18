"""Keep freed memory in the process (glibc ``mallopt``) while training or predicting."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_KEEP_LOCK = threading.Lock()
_keep_depth = 0


@functools.cache
def _glibc() -> Any:
    """glibc through ctypes, or None on other C libraries and systems."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """While active, glibc's malloc keeps freed memory for reuse instead of returning it.

    By default glibc serves large blocks (activations, gradients) with fresh ``mmap`` pages and
    unmaps them when freed, so every training step page-faults its whole working set again; on
    the 2-core CPU this cost 20-35% of a training step of EfficientNet-Lite0 at 96 px
    (benchmarks/train_speed.py). Inside this context large blocks come from the heap and freed
    memory stays in the process for the next step (the process keeps its peak memory, as
    with jemalloc or tcmalloc). On leaving, glibc's default limits are set again and the kept
    memory is trimmed; glibc's dynamic mmap threshold stays off after that (any ``mallopt``
    call turns it off), so later large blocks of the process are always mmapped. Re-entrant;
    a no-op (yields False) without glibc or when the user tuned malloc through ``MALLOC_*``
    environment variables. The headstart commands and ``pipeline.train_run`` enter it; library
    calls for prediction leave the allocator alone.
    """
    global _keep_depth
    libc = _glibc()
    if libc is None or any(k in os.environ for k in _USER_MALLOC_SETTINGS):
        yield False
        return
    with _KEEP_LOCK:
        if _keep_depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        _keep_depth += 1
    try:
        yield True
    finally:
        with _KEEP_LOCK:
            _keep_depth -= 1
            if _keep_depth == 0:
                for option, value in _GLIBC_DEFAULTS.items():
                    libc.mallopt(option, value)
                libc.malloc_trim(0)