"""One read of many files, in worker processes: the audit's inspections and the store's squares.

Each file is read once (``inspect.read_file``): hashed and fully decoded for the audit, and, when an
image store is being filled, resized and cropped into its square, which the worker writes straight
into the store's memory-mapped file. Decoding, resizing and hashing hold the GIL long enough that
threads only contend; forked processes scale with the CPUs (6,000 Fashion-MNIST files on 2 CPUs:
0.6 s in two processes against 1.8 s in two threads). Processes are forked where the platform
forks safely (Linux, outside daemonic processes); elsewhere the files are read in threads of this
process (Pillow releases the GIL while it decodes), as they are for a few files. The workers
import nothing new and touch neither torch nor logging; each call keeps its own state, so calls
from several threads at once do not mix.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import current_process, get_context
from typing import Any

import numpy as np

from headstart.data.audit.inspect import FileInspection, read_file
from headstart.data.audit.report import BadFile
from headstart.data.image_store import SquareSpec, StoreWriter
from headstart.errors import DataError
from headstart.progress import report

__all__ = ["default_workers", "read_files"]

_MIN_FILES_PER_PROCESS = 32
"""Files per worker below which fewer workers are used (a fork costs more than it saves)."""

Job = tuple[int, str, bool]  # row, path, whether the audit inspects it
Inspected = tuple[str | None, str | None, str | None]  # digest, bad kind, reason
Done = tuple[int, Inspected | None, tuple[int, ...] | None, str | None]
"""Row; the inspection as (digest, bad kind, reason), without the path (the parent has it: 300,000
copies of path strings coming back from the workers cost 100 MB); geometry; failure."""

_state: dict[str, Any] = {}  # the worker's settings and open store (set by _start_worker)


def default_workers() -> int:
    """The CPUs this process may use, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


def read_files(
    paths: Sequence[str],
    *,
    max_pixels: int,
    min_size: int,
    audit: Sequence[bool],
    store: StoreWriter | None = None,
    workers: int | None = None,
    task: str = "audit",
) -> list[FileInspection | None]:
    """Read each of ``paths`` that the audit inspects or ``store`` needs, once.

    Args:
        paths: The files; with ``store``, in its row order (``store.paths``).
        max_pixels: See ``images.decode_image``.
        min_size: See ``inspect.read_file``.
        audit: Per path, whether to inspect it (others get None).
        store: A new store entry whose every row is filled here (geometry and failures too).
        workers: Processes (default ``default_workers()``).
        task: The name progress is reported under.

    Returns:
        Per path, its inspection, or None where ``audit`` said no.

    Raises:
        DataError: A worker process died (a decoder crash on a malformed file).
    """
    jobs = [(i, p, bool(a)) for i, (p, a) in enumerate(zip(paths, audit, strict=True))]
    jobs = [job for job in jobs if job[2] or store is not None]
    found: list[FileInspection | None] = [None] * len(paths)
    settings = {"max_pixels": max_pixels, "min_size": min_size}
    square = None if store is None else store.spec
    pixels = None if store is None else str(store.pixels_file)
    workers = min(workers or default_workers(), len(jobs) // _MIN_FILES_PER_PROCESS)
    state = None  # the forked workers' own, from _start_worker; else this call's
    if workers < 2 or not _forks_safely():  # in this process: threads, or one for a few files
        state = _new_state(settings, square, pixels)
        pool: Executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="headstart-read")
    else:
        with warnings.catch_warnings():  # Python 3.12+ warns of fork() in threaded processes;
            warnings.simplefilter("ignore", DeprecationWarning)  # the workers run no thread's code
            pool = ProcessPoolExecutor(
                workers, mp_context=get_context("fork"), initializer=_start_worker,
                initargs=(settings, square, pixels),
            )  # fmt: skip
    try:
        for results, done in _in_pool(pool, jobs, max(1, workers), state):
            _keep(results, paths, found, store)
            report(task, done, len(jobs))
    except BaseException:  # Ctrl-C, or a failure: the chunks not started are dropped
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if state is not None and state["pixels"] is not None:
            state["pixels"].close()
    pool.shutdown()
    return found


def _in_pool(
    pool: Executor, jobs: list[Job], workers: int, state: dict[str, Any] | None
) -> Iterator[tuple[list[Done], int]]:
    """Each chunk's results as it comes back, and the jobs done so far. Chunks go to the pool a
    few at a time, so that a stop leaves little queued to finish."""
    size = max(1, min(256, len(jobs) // (workers * 8)))
    waiting = (jobs[i : i + size] for i in range(0, len(jobs), size))
    read = _read_chunk if state is None else functools.partial(_read_chunk, state=state)
    pending = {pool.submit(read, c) for c in itertools.islice(waiting, 2 * workers)}
    done = 0
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        pending |= {pool.submit(read, c) for c in itertools.islice(waiting, len(finished))}
        for future in finished:
            try:
                results = future.result()
            except BrokenProcessPool:
                raise DataError(
                    "a worker process died while reading images (out of memory, or a decoder "
                    "crashed on a malformed file); free memory and retry, or move recently "
                    "added files out of the data folder to find the one that crashes it."
                ) from None
            done += len(results)
            yield results, done


def _forks_safely() -> bool:
    """Linux forks a process with torch's threads safely enough (DataLoader does); macOS does
    not (its frameworks), Windows cannot fork, and a daemonic process may have no children."""
    return sys.platform.startswith("linux") and not current_process().daemon


def _keep(
    results: list[Done],
    paths: Sequence[str],
    found: list[FileInspection | None],
    store: StoreWriter | None,
) -> None:
    for row, inspected, geometry, failure in results:
        if inspected is not None:
            path = paths[row]
            digest, kind, reason = inspected
            bad = None if kind is None else BadFile(path, reason or "", kind)
            found[row] = FileInspection(path, digest, bad)
        if store is None:
            continue
        if geometry is not None:
            store.geometry[row] = geometry
        else:
            store.failures[store.paths[row]] = failure or "cannot read image"


def _new_state(
    settings: dict[str, int], square: SquareSpec | None, pixels: str | None
) -> dict[str, Any]:
    """What ``_read_chunk`` reads with: the settings, the square, the store's rows (opened)."""
    return {**settings, "square": square, "pixels": None if pixels is None else _Rows(pixels)}


def _start_worker(settings: dict[str, int], square: SquareSpec | None, pixels: str | None) -> None:
    """A forked worker's start: Ctrl-C is the parent's to handle (it drops the work left)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state.update(_new_state(settings, square, pixels))


class _Rows:
    """Writes squares into the store's ``.npy`` file by row: with ``pwrite`` where there is one
    (the pages stay out of the worker's memory), else through a memory map (Windows)."""

    def __init__(self, path: str) -> None:
        mapped = np.load(path, mmap_mode="r+")
        self._fd: int | None = None
        if hasattr(os, "pwrite"):
            self._offset, self._map = mapped.offset, None
            self._fd = os.open(path, os.O_WRONLY)
        else:
            self._map = mapped

    def write(self, row: int, square: np.ndarray) -> None:
        if self._fd is None:
            self._map[row] = square  # type: ignore[index]
            return
        data = square.tobytes()  # C order, the row's layout in the file
        os.pwrite(self._fd, data, self._offset + row * len(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        elif self._map is not None:
            self._map.flush()


def _read_chunk(jobs: list[Job], state: dict[str, Any] | None = None) -> list[Done]:
    """Read each job's file; write its square into the store's row; return what the parent keeps.
    ``state`` is this call's (threads), else the forked worker's own."""
    state = _state if state is None else state
    square, pixels = state["square"], state["pixels"]
    results: list[Done] = []
    for row, path, audit in jobs:
        inspection, made = read_file(
            path, max_pixels=state["max_pixels"], min_size=state["min_size"], audit=audit,
            square=square,
        )  # fmt: skip
        geometry, failure = None, None
        inspected = None
        if inspection is not None:
            bad = inspection.bad
            inspected = (inspection.digest, None if bad is None else bad.kind,
                         None if bad is None else bad.reason)  # fmt: skip
        if isinstance(made, tuple):
            pixels.write(row, made[0])
            geometry = made[1]
        elif isinstance(made, str):
            failure = made
        results.append((row, inspected, geometry, failure))
    return results
