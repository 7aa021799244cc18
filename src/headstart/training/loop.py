"""One epoch as plain functions: a pass of training, a pass of validation.

The batches may be decoded images (the model) or cached features (the head): the functions only
see a module, an iterable of ``(inputs, labels)`` on the module's device and the speed settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from lightning_fabric import Fabric
from torch import nn

from headstart.config import BnStats
from headstart.progress import report
from headstart.speed.settings import SpeedSettings
from headstart.surgery import train_mode
from headstart.training.checkpoint import restore_rng_state

__all__ = ["Batches", "EpochProgress", "StepOptions", "scores", "train_epoch", "validate"]


class Batches(Iterable[tuple[torch.Tensor, torch.Tensor]], Sized, Protocol):
    """What an epoch iterates: ``(inputs, labels)`` pairs on the device, with a length."""


@dataclass
class EpochProgress:
    """How far an epoch of training has got: the part a mid-epoch checkpoint must keep.

    Attributes:
        batches: Batches trained on in this epoch.
        seen: Inputs trained on in this epoch.
        sums: Summed loss (times batch size) and correct predictions, on the training device.
        steps: Optimizer steps done in this epoch (``batches`` unless gradients accumulate).
    """

    batches: int = 0
    seen: int = 0
    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(2))
    steps: int = -1

    def __post_init__(self) -> None:
        if self.steps < 0:
            self.steps = self.batches

    def state_dict(self) -> dict[str, Any]:
        """Plain-value state (the sums move to the CPU)."""
        return {"batches": self.batches, "seen": self.seen, "sums": self.sums.detach().cpu(),
                "steps": self.steps}  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> EpochProgress:
        """Rebuild from :meth:`state_dict`."""
        batches = int(state["batches"])
        steps = int(state.get("steps", batches))
        return cls(batches, int(state["seen"]), state["sums"].clone(), steps)


Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""Turns ``(inputs, labels)`` into ``(mixed inputs, soft targets)`` (see ``training.mixing``)."""


@dataclass(frozen=True)
class StepOptions:
    """What a training step does besides forward, backward and the optimizer step.

    Attributes:
        mix: Mixes each batch (MixUp / CutMix); the loss then sees soft targets.
        accumulate: Batches per optimizer step; each batch's loss is divided by the batches of
            its group (the last group of an epoch may be shorter).
        clip_grad: Clip the global gradient norm to this before each optimizer step (0: off).
    """

    mix: Mix | None = None
    accumulate: int = 1
    clip_grad: float = 0.0


StepHook = Callable[[EpochProgress, torch.Tensor, float], None]
"""Called after every step with the epoch's progress, the step's loss and the images/s so far."""


def _forward(module: nn.Module, inputs: torch.Tensor, speed: SpeedSettings) -> torch.Tensor:
    """Float32 outputs for a batch, run in the layout and autocast dtype of ``speed``."""
    inputs = speed.prepare_input(inputs) if inputs.dim() == 4 else inputs
    if speed.autocast is None:
        return module(inputs)
    with speed.autocast_context():
        outputs = module(inputs)
    return outputs.float()


def train_epoch(
    fabric: Fabric,
    module: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    *,
    speed: SpeedSettings,
    bn: BnStats = BnStats.ADAPT,
    start: EpochProgress | None = None,
    rng_state: dict[str, Any] | None = None,
    on_step: StepHook | None = None,
    options: StepOptions | None = None,
) -> dict[str, float]:
    """Train ``module`` for one pass over ``batches``, stepping ``scheduler`` after every step.

    The module is put in train mode with :func:`headstart.surgery.train_mode`, so frozen norm
    layers keep their running statistics. With ``options.accumulate`` N, gradients of N batches
    add up before each optimizer step (``fabric.no_backward_sync`` skips the all-reduce of the
    others), and ``scheduler`` and ``on_step`` count optimizer steps. With ``options.mix``, the
    loss is computed against the mixed soft targets, while the training accuracy counts the
    predictions on the mixed inputs against the unmixed labels.

    To continue an epoch from a mid-epoch checkpoint, restore the batches' generator to its state
    at the start of the epoch and pass ``start`` and ``rng_state``: the first ``start.batches``
    batches are drawn and thrown away (same order, same augmentation draws), then the global RNG
    states are restored, so the remaining steps match an uninterrupted epoch bit for bit (with
    ``num_workers=0``).

    Args:
        fabric: Runs backward (precision, devices, distributed).
        module: The module as returned by ``fabric.setup``.
        batches: ``(inputs, labels)`` on the module's device.
        optimizer: Optimizer over the trainable parameters.
        scheduler: Per-step learning-rate schedule.
        loss_fn: Training loss, e.g. cross-entropy with label smoothing.
        speed: Input layout and autocast dtype of the forward pass (the loss is float32).
        bn: What norm layers of trainable stages do with their running statistics.
        start: Progress of the epoch so far; ``None`` starts at the first batch.
        rng_state: RNG states (:func:`~headstart.training.checkpoint.capture_rng_state`) to
            restore just before the first step.
        on_step: Called after each optimizer step; may raise to stop training. A mid-epoch
            checkpoint is only taken there (gradients are never half-accumulated in one).
        options: Mixing, gradient accumulation and clipping (default: none of them).

    Returns:
        ``loss`` (mean over inputs), ``acc``, ``images`` (count), ``seconds``.
    """
    train_mode(module, bn=bn)
    options, start = options or StepOptions(), start or EpochProgress()
    sums = start.sums.to(fabric.device, copy=True)  # loss * batch, correct; summed on the device
    seen = done = start.seen
    steps, total, every = start.steps, len(batches), max(1, options.accumulate)
    iterator = iter(batches)
    for _ in range(start.batches):
        next(iterator)
    if rng_state is not None:
        restore_rng_state(rng_state)
    began = time.perf_counter()
    for index, (inputs, labels) in enumerate(iterator, start=start.batches):
        position = index % every  # groups start at the epoch's first batch
        group = min(every, total - index + position)
        if position == 0:
            optimizer.zero_grad(set_to_none=True)
        targets = labels
        if options.mix is not None:
            inputs, targets = options.mix(inputs, labels)
        logits = _forward(module, inputs, speed)
        loss = loss_fn(logits, targets)
        _backward(fabric, module, loss, group=group, last=position == group - 1)
        batch = labels.shape[0]
        sums[0] += loss.detach().float() * batch
        sums[1] += (logits.detach().argmax(dim=1) == labels).sum()
        seen += batch
        if position < group - 1:
            continue
        _optimizer_step(fabric, module, optimizer, options.clip_grad)
        scheduler.step()
        steps += 1
        if on_step is not None:
            elapsed = time.perf_counter() - began
            speed_now = (seen - done) / elapsed if elapsed > 0 else 0.0
            on_step(EpochProgress(index + 1, seen, sums, steps), loss.detach(), speed_now)
    counts = torch.stack([sums[0], sums[1], sums.new_tensor(seen), sums.new_tensor(seen - done)])
    if fabric.world_size > 1:  # every process's images (a resumed epoch's sums are rank 0's)
        counts = fabric.all_reduce(counts, reduce_op="sum")  # type: ignore[assignment]
    total_loss, correct, seen, images = counts.tolist()  # the one device sync of the epoch
    return {
        "loss": total_loss / max(seen, 1),
        "acc": correct / max(seen, 1),
        "images": int(images),
        "seconds": time.perf_counter() - began,
    }


def _backward(
    fabric: Fabric, module: nn.Module, loss: torch.Tensor, *, group: int, last: bool
) -> None:
    """Backward of one batch of a group of ``group``: its loss divided by ``group``; gradients
    are synchronised across processes at the group's last batch only."""
    scaled = loss / group if group > 1 else loss
    if last:
        fabric.backward(scaled)
        return
    with fabric.no_backward_sync(module):  # type: ignore[arg-type]  # fabric.setup's module
        fabric.backward(scaled)


def _optimizer_step(
    fabric: Fabric, module: nn.Module, optimizer: torch.optim.Optimizer, clip_grad: float
) -> None:
    """Clip the global gradient norm (through Fabric, which unscales first) and step."""
    if clip_grad > 0:
        fabric.clip_gradients(module, optimizer, max_norm=clip_grad, error_if_nonfinite=False)
    optimizer.step()


def validate(module: nn.Module, batches: Batches, *, speed: SpeedSettings) -> dict[str, Any]:
    """Run ``module`` over ``batches`` in eval mode without gradients.

    ``speed`` sets the input layout only: validation runs without the trial's autocast (in
    float32 unless Fabric's ``--precision`` says otherwise), so its metrics match
    ``headstart evaluate`` on the saved model.

    Returns:
        ``loss`` (plain cross-entropy, mean over inputs), ``acc``, ``seconds``, and ``logits``
        ``[N, C]`` (float32) and ``targets`` ``[N]`` concatenated on the CPU.
    """
    module.eval()
    layout = SpeedSettings(speed.device_type, channels_last=speed.channels_last)
    all_logits: list[torch.Tensor] = []
    all_targets: list[torch.Tensor] = []
    start = time.perf_counter()
    with torch.no_grad():
        for index, (inputs, labels) in enumerate(batches, start=1):
            all_logits.append(_forward(module, inputs, layout).float().cpu())
            all_targets.append(labels.cpu())
            report("validating", index, len(batches))
    logits = torch.cat(all_logits) if all_logits else torch.zeros(0, 0)
    targets = torch.cat(all_targets) if all_targets else torch.zeros(0, dtype=torch.long)
    return {**scores(logits, targets), "seconds": time.perf_counter() - start}


def scores(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """``loss`` (plain cross-entropy, mean), ``acc``, and the ``logits`` and ``targets``."""
    seen = len(targets)
    loss = nn.functional.cross_entropy(logits, targets, reduction="sum") if seen else 0.0
    correct = int((logits.argmax(dim=1) == targets).sum()) if seen else 0
    return {
        "loss": float(loss) / max(seen, 1),
        "acc": correct / max(seen, 1),
        "logits": logits,
        "targets": targets,
    }
