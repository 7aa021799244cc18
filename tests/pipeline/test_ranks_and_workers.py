"""What rank 0 does for all (with one process, nothing changes), and the DataLoader workers
``--num-workers auto`` means per device."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from headstart.errors import DataError
from headstart.pipeline.phase_data import loader_workers
from headstart.pipeline.ranks import from_rank_zero, rank_zero_first


def _fabric(device: str = "cpu", world: int = 1, nodes: int = 1):
    return SimpleNamespace(device=torch.device(device), world_size=world, num_nodes=nodes,
                           is_global_zero=True)  # fmt: skip


def test_auto_workers_are_none_on_a_cpu_and_some_per_gpu_process(monkeypatch):
    assert loader_workers("auto", _fabric("cpu")) == 0
    assert loader_workers(3, _fabric("cpu")) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    assert loader_workers("auto", _fabric("cuda")) == 8
    assert loader_workers("auto", _fabric("cuda", world=8)) == 3  # 32 CPUs / 8 processes, less one
    assert loader_workers("auto", _fabric("cuda", world=16, nodes=2)) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers("auto", _fabric("cuda", world=4)) == 1


def test_one_process_just_calls():
    fabric = _fabric()
    assert from_rank_zero(fabric, lambda: 5) == 5
    assert rank_zero_first(fabric, lambda: 6) == 6
    with pytest.raises(DataError):
        from_rank_zero(fabric, lambda: (_ for _ in ()).throw(DataError("no images")))


class _Told:
    """A process of two that is told ``message`` by rank 0's broadcast."""

    def __init__(self, rank: int, message=None) -> None:
        self.world_size, self.is_global_zero, self.message = 2, rank == 0, message

    def broadcast(self, value, src=0):
        return value if self.is_global_zero else self.message


def test_rank_zeros_unexpected_failure_reaches_the_others():
    from headstart.pipeline.ranks import RankZeroFailed

    def broken():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # rank 0 raises its own error
        from_rank_zero(_Told(0), broken)
    with pytest.raises(RankZeroFailed, match="OSError: disk full"):
        rank_zero_first(_Told(1, "OSError: disk full"), lambda: 1)
    error = DataError("no images")
    with pytest.raises(DataError) as caught:
        from_rank_zero(_Told(1, (None, error)), lambda: 1)
    assert caught.value.told_by_rank_zero  # printed by rank 0 already: the CLI stays quiet
