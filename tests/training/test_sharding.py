"""Each process's shard: disjoint, covering, equal in size; gathered back in the set's order."""

from __future__ import annotations

import pytest
import torch

from headstart.training.sharding import ShardSampler, gather_in_order, shard, shard_size


@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 2), (7, 3), (2, 4)])
def test_shards_are_equal_cover_everything_and_overlap_only_by_padding(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    shards = [shard(order, rank, world) for rank in range(world)]
    assert {len(s) for s in shards} == {shard_size(n, world)}
    flat = torch.cat(shards).tolist()
    assert set(flat) == set(range(n))
    assert len(flat) - n == shard_size(n, world) * world - n  # only the padding repeats


def test_samplers_of_all_processes_draw_one_order_and_split_it():
    samplers = [ShardSampler(9, torch.Generator().manual_seed(3), rank=r, world=3)
                for r in range(3)]  # fmt: skip
    for _ in range(2):  # two epochs: a new order each, the same on every process
        shards = [list(s) for s in samplers]
        assert sorted(sum(shards, [])) == list(range(9))
    again = ShardSampler(9, torch.Generator().manual_seed(3), rank=0, world=3)
    assert list(again) != list(again)  # the shared generator moves on every epoch


def test_weighted_draws_are_shared_too():
    weights = torch.tensor([1.0, 0.0, 1.0, 0.0])
    drawn = [list(ShardSampler(4, torch.Generator().manual_seed(1), rank=r, world=2,
                               weights=weights)) for r in range(2)]  # fmt: skip
    assert set(sum(drawn, [])) <= {0, 2}


class _Gathering:
    """Stands in for a Fabric of ``world`` processes whose rows are all known here."""

    def __init__(self, world: int, parts: list[torch.Tensor]) -> None:
        self.world_size, self.parts, self.device = world, parts, torch.device("cpu")

    def all_gather(self, local: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.parts)


def test_gathered_outputs_come_back_in_the_validation_sets_order():
    n, world = 7, 3
    values = torch.arange(n) * 10  # a row's value says where it belongs
    parts = [values[shard(torch.arange(n), r, world)] for r in range(world)]
    gathered = gather_in_order(_Gathering(world, parts), parts[0], n)  # type: ignore[arg-type]
    assert torch.equal(gathered, values)
