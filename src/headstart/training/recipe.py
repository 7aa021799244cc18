"""A phase's training recipe: its loss, batch mixing, gradient options and weight average.

Built once per phase from the engine's settings and the phase's batches: class weights come from
the phase's training labels, CutMix applies to image batches only, and the weight average starts
from the weights the phase starts with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from headstart.config import ClassWeights
from headstart.errors import ConfigError
from headstart.training.batches import PhaseBatches
from headstart.training.ema import EmaWeights
from headstart.training.imbalance import balanced_class_weights
from headstart.training.loop import StepOptions
from headstart.training.mixing import build_train_loss, create_batch_mix
from headstart.training.settings import EngineSettings
from headstart.zoo.spec import BackboneSpec

__all__ = ["PhaseRecipe", "class_count", "phase_recipe"]


@dataclass
class PhaseRecipe:
    """How a phase trains beyond its optimizer and schedule.

    Attributes:
        loss_fn: The training loss (soft targets when the batches are mixed).
        options: Mixing, gradient accumulation and clipping, for ``train_epoch``.
        ema: The moving average of the trained weights (None: off).
        notes: What the user should know about this phase's recipe.
    """

    loss_fn: nn.Module
    options: StepOptions
    ema: EmaWeights | None = None
    notes: list[str] = field(default_factory=list)


def class_count(model: nn.Module, spec: BackboneSpec, num_classes: int = 0) -> int:
    """``num_classes`` when given, else the output size of the model's classifier.

    Raises:
        ConfigError: Neither says how many classes there are.
    """
    if num_classes > 0:
        return num_classes
    head = model.get_submodule(spec.classifier)
    out = getattr(head, "out_features", None)
    if not isinstance(out, int) or out < 1:
        raise ConfigError(
            f"{spec.name}: cannot tell the number of classes from the classifier "
            f"{spec.classifier!r} ({type(head).__name__}); pass EngineSettings(num_classes=...)."
        )
    return out


def phase_recipe(
    settings: EngineSettings,
    batches: PhaseBatches,
    trained: nn.Module,
    *,
    num_classes: int,
    device: torch.device,
) -> PhaseRecipe:
    """The recipe of a phase that trains ``trained`` (the unwrapped module) on ``batches``."""
    weights = None
    if ClassWeights(settings.class_weights) is ClassWeights.BALANCED:
        weights = balanced_class_weights(batches.train_labels(), num_classes).to(device)
    smoothing = settings.optim.label_smoothing
    mix = create_batch_mix(
        settings.mixup, settings.cutmix, num_classes=num_classes, label_smoothing=smoothing,
        images=batches.holds_images,
    )  # fmt: skip
    notes = []
    if settings.cutmix > 0 and not batches.holds_images:
        then = "MixUp only" if mix is not None else "without mixing"
        notes.append(
            "cutmix cuts patches out of images; this phase trains on cached features, so it "
            f"trains {then} (--no-cache trains on images, with CutMix)"
        )
    loss_fn = build_train_loss(label_smoothing=smoothing, weights=weights, soft=mix is not None)
    options = StepOptions(mix=mix, accumulate=settings.accumulate, clip_grad=settings.clip_grad)
    ema = EmaWeights(trained, settings.ema_decay) if settings.ema else None
    return PhaseRecipe(loss_fn, options, ema, notes)
