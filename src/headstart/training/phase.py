"""Setting up one phase: what trains, its optimizer and schedule, its speed settings, Fabric.

Each phase changes which parameters train, so each phase sets the trainable stages on the
*unwrapped* model, builds a fresh optimizer over its parameter groups and calls
``fabric.setup(module, optimizer)`` again. A distributed wrapper (DDP) is thus rebuilt with the new
set of trainable parameters; on one device the call only moves the module and wraps it for
precision.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from lightning_fabric import Fabric
from torch import nn

from headstart.config import BnStats, Optimizer, Schedule
from headstart.speed.depthwise import has_depthwise
from headstart.speed.settings import SpeedSettings, prefers_channels_last
from headstart.speed.trial import training_candidates, tune_speed
from headstart.surgery import param_groups, set_trainable_stages, train_mode
from headstart.training.batches import PhaseBatches
from headstart.training.optim import build_optimizer, build_scheduler
from headstart.training.strategies import Phase
from headstart.zoo.spec import BackboneSpec

__all__ = ["OptimSettings", "PhaseSetup", "choose_speed", "setup_phase"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimSettings:
    """How every phase's optimizer and schedule are built (the phase gives the head's lr).

    Attributes:
        optimizer: ``sgd`` (Nesterov momentum), ``adam`` or ``adamw``.
        momentum: SGD momentum.
        weight_decay: Applied to weights, not to biases and norm parameters.
        backbone_lr_factor: Body learning rate = the head's times this factor...
        layer_decay: ...times this per stage counted back from the last one.
        warmup_epochs: Linear warm-up before the schedule (at most half of a phase).
        label_smoothing: Of the training loss (validation loss is plain cross-entropy).
        schedule: What the learning rate does after the warm-up (``training.optim``).
    """

    optimizer: Optimizer = Optimizer.ADAMW
    momentum: float = 0.9
    weight_decay: float = 0.01
    backbone_lr_factor: float = 0.1
    layer_decay: float = 0.7
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    schedule: Schedule = Schedule.COSINE


@dataclass
class PhaseSetup:
    """A phase ready to train: the wrapped module, its optimizer and schedule, speed settings.

    ``trained`` is the module before Fabric wrapped it (the model, or its head on features).
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    speed: SpeedSettings
    trained: nn.Module


def setup_phase(
    fabric: Fabric,
    model: nn.Module,
    spec: BackboneSpec,
    phase: Phase,
    batches: PhaseBatches,
    optim: OptimSettings,
    *,
    bn: BnStats,
    auto_speed: bool,
    saved_speed: dict[str, Any] | None = None,
    accumulate: int = 1,
) -> PhaseSetup:
    """Freeze for ``phase``, build optimizer + schedule, pick the speed settings, set up Fabric.

    Args:
        auto_speed: Time the candidate speed settings (``--precision auto``); otherwise Fabric
            applies the precision and only the layout is chosen.
        saved_speed: Speed settings from the checkpoint being resumed (used instead of a trial).
        accumulate: Batches per optimizer step: the schedule counts optimizer steps.
    """
    set_trainable_stages(model, spec, phase.trainable_stages, bn=bn)
    model.to(fabric.device)  # before the optimizer (fused kernels depend on the device) + trial
    groups = param_groups(
        model, spec, lr=phase.lr, backbone_lr_factor=optim.backbone_lr_factor,
        layer_decay=optim.layer_decay, weight_decay=optim.weight_decay,
    )  # fmt: skip
    optimizer = build_optimizer(
        groups, optim.optimizer, lr=phase.lr, momentum=optim.momentum,
        weight_decay=optim.weight_decay,
    )  # fmt: skip
    steps = math.ceil(len(batches.train) / max(1, accumulate))  # optimizer steps per epoch
    total = max(1, phase.epochs * steps)
    warmup = round(optim.warmup_epochs * steps)
    if warmup > total // 2:
        logger.info(
            "warm-up of %d steps shortened to %d (half of phase %s)", warmup, total // 2, phase.name
        )
    scheduler = build_scheduler(
        optimizer, total_steps=total, warmup_steps=warmup, schedule=optim.schedule
    )
    module = batches.module(model, spec)
    if saved_speed is not None:
        speed = SpeedSettings(**saved_speed)
    else:
        speed = choose_speed(fabric, model, spec, phase, batches, bn=bn, auto=auto_speed)
    speed.prepare_model(module)  # memory format only: compile is not a training candidate
    wrapped, fabric_optimizer = fabric.setup(module, optimizer)
    return PhaseSetup(wrapped, fabric_optimizer, scheduler, speed, module)


def choose_speed(
    fabric: Fabric,
    model: nn.Module,
    spec: BackboneSpec,
    phase: Phase,
    batches: PhaseBatches,
    *,
    bn: BnStats,
    auto: bool,
) -> SpeedSettings:
    """Layout and autocast for ``phase``: a timed trial when ``auto``.

    Batches without a trial batch (cached features: a linear head) train in float32. With an
    explicit precision, Fabric applies it and only the layout is set (channels-last for
    convolutional networks). The trial times one warm-up and two steps of forward + backward per
    candidate on a random batch of the training shape, with the phase's frozen stages and
    BatchNorm modes, and leaves weights, statistics and the RNG as they were.
    """
    device = fabric.device
    sample = batches.trial_batch()
    if sample is None:
        return SpeedSettings(device.type)
    conv = prefers_channels_last(model)
    if not auto:
        return SpeedSettings(device.type, channels_last=conv)
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    candidates = training_candidates(
        device.type, conv=conv, depthwise=has_depthwise(model), bf16_supported=bf16
    )
    synced = any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    if len(candidates) == 1 or synced:  # SyncBatchNorm steps are collectives: no lone trial
        return candidates[0]
    chosen: dict[str, Any] | None = None
    if fabric.is_global_zero:  # rank 0 times (and writes tuning.json); every process uses it
        train_mode(model, bn=bn)
        key = f"{spec.name}|{phase.name}:{phase.trainable_stages}|bn:{BnStats(bn).value}"
        chosen = tune_speed(
            model, sample.to(device), key=key, mode="train", steps=2, candidates=candidates
        ).to_dict()
    return SpeedSettings(**fabric.broadcast(chosen, src=0))
