"""Each process's share of the data when several train one model (DDP).

Every process draws the epoch's order from a generator seeded alike, so all draw the same order;
process ``rank`` of ``world`` then takes every ``world``-th index from ``rank`` on. The order is
padded (from its start) to a multiple of ``world``, so every process trains and validates the same
number of batches and no collective waits for a process that has run out. Validation outputs are
gathered back into the validation set's own order with the padding removed, so every process
scores exactly the single-process validation set. With one process nothing here is used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import torch
from lightning_fabric import Fabric
from torch.utils.data import Sampler

__all__ = ["ShardSampler", "gather_in_order", "shard", "shard_size"]


def shard_size(n: int, world: int) -> int:
    """Samples each of ``world`` processes gets from ``n`` (the padded share)."""
    return math.ceil(n / world) if n else 0


def shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Process ``rank``'s indices of ``order``: padded from its start to a multiple of ``world``,
    then every ``world``-th from ``rank``."""
    n = len(order)
    if n == 0:
        return order
    padded = shard_size(n, world) * world
    if padded > n:
        order = torch.cat([order, order.repeat(math.ceil((padded - n) / n))[: padded - n]])
    return order[rank::world]


class ShardSampler(Sampler[int]):
    """A ``DataLoader`` sampler for one process: the epoch's order from a shared generator
    (a shuffle, or draws with replacement by ``weights``), then this process's shard of it."""

    def __init__(
        self,
        n: int,
        generator: torch.Generator,
        *,
        rank: int,
        world: int,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.n, self.generator, self.rank, self.world = n, generator, rank, world
        self.weights = weights

    def __len__(self) -> int:
        return shard_size(self.n, self.world)

    def __iter__(self) -> Iterator[int]:
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True,
                                      generator=self.generator)  # fmt: skip
        else:
            order = torch.randperm(self.n, generator=self.generator)
        yield from shard(order, self.rank, self.world).tolist()


def gather_in_order(fabric: Fabric, local: torch.Tensor, n: int) -> torch.Tensor:
    """Every process's rows of :func:`shard` of ``arange(n)``, gathered into that order on every
    process (padding removed); ``local`` holds this process's rows in its shard's order."""
    world = fabric.world_size
    if world == 1:
        return local
    with warnings.catch_warnings():  # Fabric calls a gather torch now deprecates
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        gathered = fabric.all_gather(local.to(fabric.device)).cpu()  # [world, rows, ...]
    rows = gathered.shape[1]
    interleaved = gathered.transpose(0, 1).reshape(world * rows, *gathered.shape[2:])
    return interleaved[:n]
