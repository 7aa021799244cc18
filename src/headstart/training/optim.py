"""Optimizers and the per-step learning-rate schedules (linear warm-up, then the schedule).

Every schedule is a small callable object in a ``LambdaLR``: its fields are ints and floats, so
``LambdaLR.state_dict`` stores them and a checkpoint round-trips without unpickling code.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from headstart.config import Optimizer, Schedule
from headstart.errors import ConfigError

__all__ = [
    "WarmupConstant",
    "WarmupCosine",
    "WarmupOneCycle",
    "WarmupStep",
    "build_optimizer",
    "build_scheduler",
]


def build_optimizer(
    groups: Iterable[dict[str, Any]],
    name: Optimizer | str,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """Build an optimizer over parameter groups.

    Each group's own ``lr`` and ``weight_decay`` win over the defaults given here. SGD uses
    Nesterov momentum (plain SGD when ``momentum`` is 0); Adam applies ``weight_decay`` as L2,
    AdamW decoupled.
    """
    try:
        kind = Optimizer(name)
    except ValueError:
        words = ", ".join(o.value for o in Optimizer)
        raise ConfigError(f"unknown optimizer {name!r}; use one of {words}.") from None
    groups = list(groups)
    if kind is Optimizer.SGD:
        return torch.optim.SGD(
            groups, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
        )
    adam = torch.optim.Adam if kind is Optimizer.ADAM else torch.optim.AdamW
    if _can_fuse(groups):  # one kernel for all parameters: 2.8 ms instead of 9-12 ms per step
        with contextlib.suppress(RuntimeError):
            return adam(groups, lr=lr, weight_decay=weight_decay, fused=True)
    return adam(groups, lr=lr, weight_decay=weight_decay)


def _can_fuse(groups: list[dict[str, Any]]) -> bool:
    """Whether the fused Adam kernels apply: float parameters on a CPU or a CUDA device."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


class _AfterWarmup:
    """LR factor: linear warm-up to 1 over ``warmup_steps``, then :meth:`after` of the steps done
    since and the steps that follow the warm-up."""

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return self.after(step - self.warmup_steps, max(1, self.total_steps - self.warmup_steps))

    def after(self, done: int, span: int) -> float:
        raise NotImplementedError


class WarmupCosine(_AfterWarmup):
    """LR factor for step ``s``: linear warm-up to 1 over ``warmup_steps``, then cosine to 0.

    A callable object rather than a closure, so ``LambdaLR.state_dict`` stores its (int) fields.
    """

    def after(self, done: int, span: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done / span)))


class WarmupConstant(_AfterWarmup):
    """LR factor: linear warm-up to 1 over ``warmup_steps``, then 1 to the end."""

    def after(self, done: int, span: int) -> float:
        return 1.0


class WarmupStep(_AfterWarmup):
    """LR factor: linear warm-up to 1, then 10 times lower after each third of the steps that
    follow (torchvision's reference recipe: x0.1 at epochs 30 and 60 of 90)."""

    def after(self, done: int, span: int) -> float:
        return 0.1 ** min(2, 3 * done // span)


class WarmupOneCycle:
    """LR factor of a one-cycle schedule (Smith; fastai's ``fit_one_cycle``, torch's
    ``OneCycleLR``): a linear rise from ``1 / div`` to 1 over the warm-up, which lasts at least
    ``pct_start`` of the steps (one-cycle's own warm-up), then cosine annealing down to
    ``1 / (div * final_div)``.
    """

    def __init__(
        self,
        total_steps: int,
        warmup_steps: int,
        *,
        pct_start: float = 0.3,
        div: float = 25.0,
        final_div: float = 1e4,
    ) -> None:
        self.total_steps = int(total_steps)
        self.rise_steps = min(max(int(warmup_steps), round(pct_start * total_steps)),
                              total_steps // 2)  # fmt: skip
        self.start = 1.0 / float(div)
        self.end = self.start / float(final_div)

    def __call__(self, step: int) -> float:
        if step < self.rise_steps:
            return self.start + (1.0 - self.start) * step / self.rise_steps
        span = max(1, self.total_steps - 1 - self.rise_steps)
        progress = min(1.0, (step - self.rise_steps) / span)
        return self.end + (1.0 - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))


_SCHEDULES = {
    Schedule.COSINE: WarmupCosine,
    Schedule.ONECYCLE: WarmupOneCycle,
    Schedule.STEP: WarmupStep,
    Schedule.CONSTANT: WarmupConstant,
}


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    schedule: Schedule | str = Schedule.COSINE,
) -> LambdaLR:
    """Per-step schedule: linear warm-up over ``warmup_steps``, then ``schedule``.

    ``cosine`` decays to ~0 at the end; ``onecycle`` rises from lr/25 over at least 30% of the
    steps and anneals to lr/25e4 (see :class:`WarmupOneCycle`); ``step`` divides by 10 after each
    third of the steps after the warm-up; ``constant`` stays at the lr. Call
    ``scheduler.step()`` after every optimizer step. Warm-up is capped at half of
    ``total_steps`` so that some of the schedule always runs.
    """
    if total_steps < 1:
        raise ConfigError(f"the schedule needs at least one step, got {total_steps}.")
    try:
        kind = Schedule(schedule)
    except ValueError:
        words = ", ".join(s.value for s in Schedule)
        raise ConfigError(f"unknown schedule {schedule!r}; use one of {words}.") from None
    warmup = max(0, min(int(warmup_steps), total_steps // 2))
    return LambdaLR(optimizer, _SCHEDULES[kind](total_steps, warmup))
