"""Micro-batching: run the forward passes of concurrent requests together, in one worker thread.

Each request submits its decoded input batch; the worker stacks the inputs that queued up while
the previous batch ran (or within ``wait_s`` of the oldest), runs the model once for all of them
and hands each request its own rows.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch

__all__ = ["WORKER_NAME", "MicroBatcher"]

WORKER_NAME = "headstart-batcher"

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    batch: torch.Tensor
    future: Future[torch.Tensor]
    enqueued: float


class MicroBatcher:
    """Run the forward passes of concurrent requests together, in one worker thread.

    Requests submit their decoded input batch; the worker takes what is queued (after the oldest
    job, it waits up to ``wait_s`` for more, up to ``max_batch`` rows), concatenates it, calls
    ``forward`` once and hands each request its own rows of the result. A job is never split:
    one larger than ``max_batch`` (``/predict/batch``) runs on its own.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch: int,
        wait_s: float,
    ) -> None:
        self.forward, self.max_batch, self.wait_s = forward, max_batch, wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._carry: _Job | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=WORKER_NAME, daemon=True)
            self._thread.start()
            logger.info(
                "micro-batching up to %d rows, %g ms wait", self.max_batch, self.wait_s * 1e3
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running batch, stop the worker and fail the jobs still queued."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        leftovers: list[_Job | None] = [self._carry] if self._carry is not None else []
        self._carry = None
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for job in leftovers:
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down."))

    def queued(self) -> int:
        """Jobs waiting for a forward pass (not counting the running one)."""
        return self._queue.qsize() + (self._carry is not None)

    async def submit(self, batch: torch.Tensor) -> torch.Tensor:
        """``forward``'s rows for ``batch`` (N, C, H, W), run together with other requests'."""
        if self._thread is None:
            raise RuntimeError("the batcher is not running; serve the app with its lifespan.")
        future: Future[torch.Tensor] = Future()
        self._queue.put(_Job(batch, future, time.monotonic()))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while (jobs := self._collect()) is not None:
            self._forward([job for job in jobs if job.future.set_running_or_notify_cancel()])

    def _collect(self) -> list[_Job] | None:
        """The next jobs to run together, or None once stopped."""
        first, self._carry = self._carry or self._queue.get(), None
        if first is None:
            return None
        jobs, rows = [first], len(first.batch)
        deadline = first.enqueued + self.wait_s
        while rows < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # stop: run what we have, then see the sentinel again
                self._queue.put(None)
                break
            if rows + len(job.batch) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            rows += len(job.batch)
        return jobs

    def _forward(self, jobs: list[_Job]) -> None:
        """One forward pass for ``jobs``; each future gets its rows (or the error)."""
        if not jobs:
            return
        try:
            out = self.forward(torch.cat([job.batch for job in jobs]))
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request (500)
            logger.exception("batched forward pass failed")
            for job in jobs:
                job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            job.future.set_result(out[start : start + len(job.batch)])
            start += len(job.batch)
