"""The learning rates as they ran: one row per optimizer step, for lr.csv and the report.

A row holds the global step (from 1), the epoch and phase it belongs to, the head's learning rate
and the last body stage's (``None`` while the body is frozen: no body group trains). The rows go
into ``last.pt``, so a resumed run continues the trace where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LrTrace", "body_group", "step_lr"]


def step_lr(scheduler: LambdaLR, group: int, step: int) -> float:
    """The learning rate of param group ``group`` at (0-based) schedule step ``step``."""
    return float(scheduler.base_lrs[group] * scheduler.lr_lambdas[group](step))


def body_group(optimizer: torch.optim.Optimizer) -> int | None:
    """The index of the last body stage's group (the first ``stage*`` group), if one trains."""
    for index, group in enumerate(optimizer.param_groups):
        if str(group.get("name", "")).startswith("stage"):
            return index
    return None


class LrTrace:
    """The rows of lr.csv (``run_folder.LR_COLUMNS``) of a run so far."""

    def __init__(self, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]

    def record(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: LambdaLR,
        *,
        epoch: int,
        phase: str,
    ) -> None:
        """Add the step just taken (call after ``scheduler.step()``)."""
        step = scheduler.last_epoch - 1  # the schedule step whose rates the optimizer used
        body = body_group(optimizer)
        self.rows.append({
            "step": len(self.rows) + 1,
            "epoch": epoch,
            "phase": phase,
            "head_lr": step_lr(scheduler, 0, step),
            "body_lr": step_lr(scheduler, body, step) if body is not None else None,
        })  # fmt: skip

    def state_dict(self) -> list[dict[str, Any]]:
        """Plain values only (ints, floats, strings, None)."""
        return [dict(r) for r in self.rows]

    def load_state_dict(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Restore from :meth:`state_dict`."""
        self.rows = [dict(r) for r in rows]
