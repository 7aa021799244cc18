"""What the engine is told (``EngineSettings``) and what it gives back (``TrainResult``).

Both are re-exported by :mod:`headstart.training.engine`, where callers import them from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from headstart.config import BnStats, ClassWeights
from headstart.training.phase import OptimSettings
from headstart.training.strategies import Phase

__all__ = ["EngineSettings", "TrainResult"]


@dataclass(frozen=True)
class EngineSettings:
    """The engine's own settings (not the user's whole config).

    Attributes:
        seed: Seeds every phase: global RNGs and the batches' generator.
        optim: Optimizer and schedule of every phase.
        monitor: ``val_acc``, ``val_f1`` or ``val_loss``: picks the best epoch.
        patience: Early stopping within the last phase (epochs without improvement; 0: off).
        bn: What BatchNorm running statistics of trainable stages do.
        auto_speed: Time speed settings per phase (``--precision auto``).
        precision: The precision setting (a resume reuses speed settings only under the same one).
        checkpoint_every_steps: Also write ``last.pt`` every this many optimizer steps (0: epoch
            ends only).
        mixup: MixUp's alpha on training batches (0: off); feature phases mix with MixUp only.
        cutmix: CutMix's alpha on training image batches (0: off).
        ema: Keep an exponential moving average of the weights, validated every epoch.
        ema_decay: Its highest decay (reached after timm's warm-up).
        accumulate: Batches per optimizer step (gradient accumulation).
        clip_grad: Clip the global gradient norm to this (0: off).
        class_weights: ``balanced``: loss weights ``n / (k * count_c)`` from the training labels.
        num_classes: Number of classes (0: the head's output size).
        deadline: ``time.monotonic()`` by which the last phase must end (0: none): after each of
            its epochs, training stops when another epoch as long as that one would pass it
            (``--budget``; the best epoch so far is kept, as with early stopping).
    """

    seed: int = 0
    optim: OptimSettings = field(default_factory=OptimSettings)
    monitor: str = "val_acc"
    patience: int = 5
    bn: BnStats = BnStats.PRETRAINED
    auto_speed: bool = True
    precision: str = "auto"
    checkpoint_every_steps: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: bool = False
    ema_decay: float = 0.999
    accumulate: int = 1
    clip_grad: float = 0.0
    class_weights: ClassWeights = ClassWeights.NONE
    num_classes: int = 0
    deadline: float = 0.0


@dataclass
class TrainResult:
    """The outcome of :func:`~headstart.training.engine.train_phases`.

    Attributes:
        history: One row per epoch with the keys of ``HISTORY_COLUMNS`` (epochs count from 1);
            with EMA on, also ``ema``: whether the row's validation metrics are the average's.
        best_epoch: Epoch whose weights were kept, by ``settings.monitor``.
        best_metrics: That epoch's history row.
        model: The unwrapped model with the best weights loaded, on the training device.
        phases: The phases that were planned.
        stopped_early: Whether early stopping ended the run before the planned epochs.
        speed: Per phase name, the layout and autocast dtype it trained with.
        failures: Images that broke while training (path -> reason).
        diverged: What happened when a loss stopped being finite (training stopped there and
            kept the best epoch before it); None when all went well.
        ema_used: Whether the kept (best) weights are the moving average's.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    model: nn.Module
    phases: list[Phase]
    stopped_early: bool = False
    speed: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    diverged: str | None = None
    ema_used: bool = False
