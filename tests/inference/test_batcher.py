"""The micro-batcher on its own: queued jobs share one forward call, errors reach every job."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from headstart.inference.batcher import WORKER_NAME, MicroBatcher


class _Recorder:
    """A forward function that records batch sizes; the first call waits until released."""

    def __init__(self, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered, self.release, self.fail = threading.Event(), threading.Event(), fail

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        self.entered.set()
        self.release.wait(timeout=20)
        if self.fail:
            raise RuntimeError("boom")
        return x.sum(dim=(1, 2, 3))[:, None]


async def _burst(batcher: MicroBatcher, forward: _Recorder, rows: list[int]) -> list[torch.Tensor]:
    batches = [torch.full((n, 1, 1, 1), float(i)) for i, n in enumerate(rows)]
    first = asyncio.ensure_future(batcher.submit(batches[0]))
    assert await asyncio.to_thread(forward.entered.wait, 20)
    rest = [asyncio.ensure_future(batcher.submit(b)) for b in batches[1:]]
    while batcher.queued() < len(rest):
        await asyncio.sleep(0.01)
    forward.release.set()
    return await asyncio.gather(first, *rest)


def test_queued_jobs_share_forward_calls_up_to_max_batch() -> None:
    forward = _Recorder()
    batcher = MicroBatcher(forward, max_batch=4, wait_s=0)
    batcher.start()
    try:
        results = asyncio.run(_burst(batcher, forward, [1, 2, 3, 1, 3]))
    finally:
        batcher.stop()
    assert forward.sizes == [1, 2, 4, 3]  # a job is never split; none over max_batch
    for i, (n, out) in enumerate(zip([1, 2, 3, 1, 3], results)):
        assert out.tolist() == [[float(i)]] * n
    assert not any(t.name == WORKER_NAME for t in threading.enumerate())


def test_a_failing_forward_fails_each_waiting_job() -> None:
    forward = _Recorder(fail=True)
    batcher = MicroBatcher(forward, max_batch=8, wait_s=0)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            asyncio.run(_burst(batcher, forward, [1, 1]))
    finally:
        batcher.stop()


def test_submit_needs_a_running_worker() -> None:
    batcher = MicroBatcher(_Recorder(), max_batch=2, wait_s=0)
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(batcher.submit(torch.zeros(1, 1, 1, 1)))
