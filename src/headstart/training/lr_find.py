"""The learning-rate finder (fastai's method): an exponential sweep, a smoothed loss, a suggestion.

:func:`find_lr` trains one phase's parameters for at most ``max_steps`` training batches (never
more than one epoch), multiplying the head's learning rate by the same factor every step from
``start_lr`` to ``end_lr`` (body groups keep their factors below the head's), and records the
exponentially smoothed loss. It stops early once the smoothed loss exceeds ``DIVERGE_FACTOR``
times its minimum, or a loss is not finite. The sweep leaves no trace: weights, BatchNorm
statistics, parameter flags, gradients, module modes, the global RNGs and the batches' generator
are put back as they were, so a run that sweeps first trains exactly as one that does not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from torch import nn

from headstart.config import BnStats
from headstart.errors import ConfigError, DataError
from headstart.surgery import param_groups
from headstart.training.batches import PhaseBatches
from headstart.training.checkpoint import capture_rng_state, restore_rng_state
from headstart.training.loop import EpochProgress, train_epoch
from headstart.training.phase import OptimSettings, PhaseSetup, setup_phase
from headstart.training.ranks import agree_on_step
from headstart.training.strategies import Phase
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "DIVERGE_FACTOR",
    "LR_FIND_PNG",
    "SMOOTHING",
    "LrFind",
    "find_lr",
    "smooth_losses",
    "suggest_lr",
    "sweep_lrs",
]

logger = logging.getLogger(__name__)

SMOOTHING = 0.98
"""Weight of the running average in the smoothed loss (fastai's ``beta``)."""
DIVERGE_FACTOR = 4.0
"""The sweep stops once the smoothed loss exceeds this many times its minimum."""
LR_FIND_PNG = "lr_find.png"
"""The picture's file name when :meth:`LrFind.plot` is given a folder."""


@dataclass
class LrFind:
    """The outcome of a sweep.

    Attributes:
        lrs: The head's learning rate of each step taken.
        losses: The smoothed training loss after each step.
        suggestion: The learning rate :func:`suggest_lr` picks from the curve.
        raw_losses: The loss of each step before smoothing.
        diverged: Whether the sweep stopped because the loss blew up (else: it ran its steps).
    """

    lrs: list[float]
    losses: list[float]
    suggestion: float
    raw_losses: list[float] = field(default_factory=list)
    diverged: bool = False

    def plot(self, path: str | Path) -> Path:
        """Write the curve as a PNG to ``path`` (a folder gets ``LR_FIND_PNG`` in it)."""
        from headstart.evaluation.lr_plot import plot_lr_find

        target = Path(path)
        if target.is_dir():
            target = target / LR_FIND_PNG
        return plot_lr_find(
            self.lrs, self.losses, self.suggestion, target, raw_losses=self.raw_losses
        )


def sweep_lrs(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """``steps`` learning rates from ``start_lr`` to ``end_lr``, evenly spaced in log scale."""
    if steps < 2:
        return [float(start_lr)] * steps
    ratio = end_lr / start_lr
    return [float(start_lr * ratio ** (i / (steps - 1))) for i in range(steps)]


def smooth_losses(losses: Sequence[float], beta: float = SMOOTHING) -> list[float]:
    """Exponential moving average of ``losses``, debiased as Adam's moments are."""
    average, smoothed = 0.0, []
    for i, value in enumerate(losses):
        average = beta * average + (1 - beta) * float(value)
        smoothed.append(average / (1 - beta ** (i + 1)))
    return smoothed


def suggest_lr(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The "valley" learning rate of a sweep: the middle of its longest descent.

    The rule (fastai's ``valley``, with its trimming): drop the first tenth of the points and the
    last five (the blow-up), when at least three remain; find the longest strictly falling
    sequence of points of the (smoothed) loss, in step order, not necessarily adjacent (the
    longest descent); suggest the learning rate of its middle point. fastai takes the middle of
    the span of steps the descent covers; the middle of its points is used here, so the few
    falling points a noisy plateau adds before the real descent do not pull the suggestion onto
    the plateau. The result lies in the falling part of the curve, well below the minimum's lr
    (a rate that still learns fast but is not at the edge of divergence).

    Raises:
        ValueError: ``lrs`` and ``losses`` differ in length or are empty.
    """
    if not losses or len(lrs) != len(losses):
        raise ValueError(f"need as many lrs as losses, got {len(lrs)} and {len(losses)}")
    n = len(losses)
    low, high = n // 10, n - 5
    if high - low < 3:
        low, high = 0, n
    values = [v if math.isfinite(v) else math.inf for v in losses[low:high]]
    points = _longest_descent(values)
    return float(lrs[low + points[len(points) // 2]])


def _longest_descent(values: Sequence[float]) -> list[int]:
    """Indices of the longest strictly decreasing subsequence (the earliest one on ties)."""
    n = len(values)
    length, previous = [1] * n, [-1] * n
    for i in range(n):
        for j in range(i):
            if values[i] < values[j] and length[j] + 1 > length[i]:
                length[i], previous[i] = length[j] + 1, j
    end = max(range(n), key=lambda i: (length[i], -i))
    points = [end]
    while previous[points[-1]] >= 0:
        points.append(previous[points[-1]])
    return points[::-1]


class _SweepDone(Exception):
    """Raised from the step hook to end the sweep."""


def find_lr(
    fabric: Fabric,
    model: nn.Module,
    spec: BackboneSpec,
    phase: Phase,
    batches: PhaseBatches,
    optim: OptimSettings,
    *,
    bn: BnStats,
    max_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
) -> LrFind:
    """Sweep the head's learning rate over ``phase``'s trainable parameters; suggest one.

    The phase is set up as the engine sets it up (trainable stages, parameter groups, optimizer,
    Fabric) but without the timed speed trial; its schedule is replaced by the sweep. Everything
    the sweep changes is restored afterwards (see the module's docstring).

    Args:
        batches: The phase's batches; their training batches are swept in their shuffled order.
        optim: Optimizer settings of the phase (the label smoothing is the training loss's).
        bn: What BatchNorm statistics of trainable stages do (as in training; restored after).
        max_steps: At most this many steps (and at most one epoch of ``batches``).
        start_lr: The head's learning rate of the first step.
        end_lr: The head's learning rate of the last step.

    Raises:
        ConfigError: The sweep's settings are out of range.
        DataError: There are fewer than two training batches to sweep over.
    """
    if max_steps < 2 or not 0 < start_lr < end_lr or not math.isfinite(end_lr):
        raise ConfigError(
            f"lr-find needs at least 2 steps and 0 < start lr < end lr, got {max_steps} steps "
            f"from {start_lr:g} to {end_lr:g}; use e.g. 100 steps from 1e-7 to 10."
        )
    steps = min(max_steps, len(batches.train))
    if steps < 2:
        raise DataError(
            f"lr-find needs at least 2 training batches, the data gives {len(batches.train)}; "
            "lower --batch-size or add images."
        )
    planned = sweep_lrs(start_lr, end_lr, steps)
    saved = _Snapshot.take(model, batches)
    try:
        setup = setup_phase(fabric, model, spec, phase, batches, optim, bn=bn, auto_speed=False)
        schedule = _sweep_schedule(setup.optimizer, model, spec, optim, planned)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)
        watch = _sweep(fabric, setup, batches, schedule, loss_fn, bn=bn, steps=steps)
    finally:
        saved.restore(model, batches)
    raw, diverged = watch.raw, watch.diverged
    lrs = planned[: len(raw)]
    if len(raw) < 1:
        raise DataError(
            f"the loss was not finite from the first step at lr {start_lr:g}; check the data "
            "and the model, or start the sweep lower."
        )
    losses = smooth_losses(raw)
    result = LrFind(lrs, losses, suggest_lr(lrs, losses), raw, diverged)
    logger.info(
        "lr-find: %d steps from %.2g to %.2g (%s); suggested lr %.2g",
        len(lrs), lrs[0], lrs[-1], "stopped: loss diverged" if diverged else "all steps",
        result.suggestion,
    )  # fmt: skip
    return result


def _sweep(
    fabric: Fabric,
    setup: PhaseSetup,
    batches: PhaseBatches,
    schedule: torch.optim.lr_scheduler.LambdaLR,
    loss_fn: nn.Module,
    *,
    bn: BnStats,
    steps: int,
) -> _Watch:
    """Train ``steps`` steps (fewer if the loss blows up) with the sweep's schedule."""
    watch = _Watch()

    def on_step(progress: EpochProgress, loss: torch.Tensor, _speed: float) -> None:
        mean, _ = agree_on_step(fabric, float(loss), None)  # every process stops at one step
        if watch.add(mean) or progress.steps >= steps:
            raise _SweepDone

    try:
        train_epoch(fabric, setup.module, batches.train, setup.optimizer, schedule, loss_fn,
                    speed=setup.speed, bn=bn, on_step=on_step)  # fmt: skip
    except _SweepDone:
        pass
    return watch


def _sweep_schedule(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    spec: BackboneSpec,
    optim: OptimSettings,
    lrs: list[float],
) -> torch.optim.lr_scheduler.LambdaLR:
    """Set every group to its share of ``lrs[0]`` and grow them all along ``lrs`` step by step.

    A group's share is its lr relative to the head's, as :func:`headstart.surgery.param_groups`
    gives it (``backbone_lr_factor`` times ``layer_decay`` per stage).
    """
    factors = {
        group["name"]: group["lr"]
        for group in param_groups(
            model, spec, lr=1.0, backbone_lr_factor=optim.backbone_lr_factor,
            layer_decay=optim.layer_decay, weight_decay=optim.weight_decay,
        )
    }  # fmt: skip
    raw = getattr(optimizer, "optimizer", optimizer)  # Fabric's optimizer wraps the real one
    for group in raw.param_groups:
        group["lr"] = group["initial_lr"] = lrs[0] * factors[group["name"]]
    growth, last = lrs[-1] / lrs[0], len(lrs) - 1
    return torch.optim.lr_scheduler.LambdaLR(raw, lambda step: growth ** (min(step, last) / last))


@dataclass
class _Watch:
    """The losses of a sweep so far, and whether it must stop (diverged)."""

    raw: list[float] = field(default_factory=list)
    average: float = 0.0
    best: float = math.inf
    diverged: bool = False

    def add(self, value: float) -> bool:
        """Record a step's loss; True when the sweep must stop (not finite, or diverged).

        The smoothed loss is :func:`smooth_losses`' running average, kept step by step.
        """
        if not math.isfinite(value):
            self.diverged = True
            return True
        self.raw.append(value)
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * value
        smoothed = self.average / (1 - SMOOTHING ** len(self.raw))
        if len(self.raw) > 1 and smoothed > DIVERGE_FACTOR * self.best:
            self.diverged = True
            return True
        self.best = min(self.best, smoothed)
        return False


@dataclass
class _Snapshot:
    """What a sweep changes, taken before it and put back after it."""

    tensors: dict[str, tuple[torch.Tensor, torch.device]]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    modes: dict[str, bool]
    rng: dict[str, Any]
    generator: torch.Tensor

    @classmethod
    def take(cls, model: nn.Module, batches: PhaseBatches) -> _Snapshot:
        params = dict(model.named_parameters())
        named = {**params, **dict(model.named_buffers())}
        return cls(
            tensors={k: (t.detach().to("cpu", copy=True), t.device) for k, t in named.items()},
            requires_grad={k: p.requires_grad for k, p in params.items()},
            grads={k: p.grad for k, p in params.items()},
            modes={k: m.training for k, m in model.named_modules()},
            rng=capture_rng_state(),
            generator=batches.generator.get_state(),
        )

    def restore(self, model: nn.Module, batches: PhaseBatches) -> None:
        """Put values, layout, dtype and device of every tensor back, then flags and RNGs."""
        params = dict(model.named_parameters())
        for name, tensor in {**params, **dict(model.named_buffers())}.items():
            saved, device = self.tensors[name]
            tensor.data = saved.to(device, copy=True)
        for name, param in params.items():
            param.requires_grad_(self.requires_grad[name])
            param.grad = self.grads[name]
        for name, module in model.named_modules():
            module.training = self.modes[name]
        restore_rng_state(self.rng)
        batches.generator.set_state(self.generator)
