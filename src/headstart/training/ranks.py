"""What the processes of a DDP run must agree on, and what each keeps of its own.

Every decision that ends a phase or the run (a blown-up loss, a stop signal, the deadline) is taken
from values all processes share, so no process leaves while another waits in a collective. Each
process has its own RNG states (augmentation and dropout draws differ per shard); a checkpoint
keeps all of them, and the epoch's partial sums in it are every process's together. With one
process every function here returns its input.
"""

from __future__ import annotations

import signal
from typing import Any

import torch
import torch.distributed as dist
from lightning_fabric import Fabric

from headstart.training.checkpoint import capture_rng_state
from headstart.training.loop import EpochProgress

__all__ = [
    "agree_on_step",
    "all_rng_states",
    "decided_by_rank_zero",
    "epoch_start_for_rank",
    "rng_for_rank",
    "summed_progress",
]


def agree_on_step(fabric: Fabric, loss: float, signum: int | None) -> tuple[float, int | None]:
    """The mean loss of the step over the processes, and a stop signal if any process got one."""
    if fabric.world_size == 1:
        return loss, signum
    local = torch.tensor([loss, float(signum or 0)], dtype=torch.float64, device=fabric.device)
    total = fabric.all_reduce(local, reduce_op="sum").cpu()  # type: ignore[union-attr]
    mean, any_signal = float(total[0]) / fabric.world_size, float(total[1]) > 0
    if signum is None and any_signal:
        signum = int(signal.SIGTERM)  # another process was told to stop
    return mean, signum


def decided_by_rank_zero(fabric: Fabric, decision: bool) -> bool:
    """Rank 0's ``decision`` on every process (for decisions made from timings)."""
    if fabric.world_size == 1:
        return decision
    return bool(fabric.broadcast(decision, src=0))


def summed_progress(fabric: Fabric, progress: EpochProgress) -> EpochProgress:
    """``progress`` with every process's inputs and sums added up (what a checkpoint keeps)."""
    if fabric.world_size == 1:
        return progress
    counts = torch.cat([progress.sums.to(fabric.device).double(),
                        torch.tensor([float(progress.seen)], device=fabric.device,
                                     dtype=torch.float64)])  # fmt: skip
    total = fabric.all_reduce(counts, reduce_op="sum").cpu()  # type: ignore[union-attr]
    return EpochProgress(progress.batches, int(total[2]), total[:2].float(), progress.steps)


def epoch_start_for_rank(fabric: Fabric, saved: EpochProgress) -> EpochProgress:
    """Where this process continues a checkpointed epoch: the saved sums are everyone's, so only
    rank 0 starts from them (the others from zero, at the same batch)."""
    if fabric.global_rank == 0:
        return saved
    return EpochProgress(saved.batches, 0, torch.zeros_like(saved.sums), saved.steps)


def all_rng_states(fabric: Fabric) -> list[dict[str, Any]] | None:
    """Every process's RNG states, in rank order (None with one process)."""
    if fabric.world_size == 1:
        return None
    states: list[Any] = [None] * fabric.world_size
    dist.all_gather_object(states, capture_rng_state())
    return states


def rng_for_rank(fabric: Fabric, state: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """This process's RNG states from a checkpoint, and whether they are its own (False: the run
    had another number of processes, so the resume is not bit-exact)."""
    ranks = state.get("rng_ranks")
    if ranks is None:
        return state["rng"], fabric.world_size == 1
    if len(ranks) != fabric.world_size:
        return ranks[0], False
    return ranks[fabric.global_rank], True
