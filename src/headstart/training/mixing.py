"""MixUp and CutMix on training batches, and the training loss that goes with the targets.

Mixing uses torchvision's transforms v2 ``MixUp`` / ``CutMix`` (one of the two per batch, drawn
with equal chances, when both are on). They pair each sample with its neighbour in the shuffled
batch (any batch size, odd ones too) and draw from the global torch RNG, which checkpoints keep,
so a resumed run mixes the same way. Label smoothing is folded into the mixed targets
(``(1 - s) * mixed + s / k``, as timm's ``mixup_target`` does), and the loss is cross-entropy
against those soft targets (``nn.CrossEntropyLoss`` with probability targets: the same value as
timm's ``SoftTargetCrossEntropy``, and it also takes class weights).

Cached features have no image to cut: a feature phase mixes with MixUp only (features are mixed
like images are, ``lam * a + (1 - lam) * b``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms import v2

__all__ = ["BatchMix", "build_train_loss", "create_batch_mix"]


@dataclass
class BatchMix:
    """Mixes a batch of ``(inputs, labels)`` into ``(mixed inputs, soft targets [N, k])``.

    Attributes:
        transform: The torchvision v2 transform (MixUp, CutMix or a random choice of both).
        num_classes: ``k``, the width of the targets.
        label_smoothing: Folded into the targets.
    """

    transform: nn.Module
    num_classes: int
    label_smoothing: float = 0.0

    def __call__(
        self, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flat = inputs.dim() == 2  # features [N, D]: mixed as [N, D, 1, 1]
        shaped = inputs[:, :, None, None] if flat else inputs
        mixed, targets = self.transform(shaped, labels)
        if flat:
            mixed = mixed[:, :, 0, 0]
        s = self.label_smoothing
        if s:
            targets = targets * (1.0 - s) + s / self.num_classes
        return mixed, targets


def create_batch_mix(
    mixup: float,
    cutmix: float,
    *,
    num_classes: int,
    label_smoothing: float,
    images: bool = True,
) -> BatchMix | None:
    """The batch mixing of a phase, or None when neither alpha is set (or applies).

    Args:
        mixup: MixUp's Beta alpha (0: off).
        cutmix: CutMix's Beta alpha (0: off); only for image batches.
        num_classes: Number of classes (the targets' width).
        label_smoothing: Folded into the soft targets.
        images: Whether the batches are images (False: cached features, MixUp only).
    """
    choices: list[nn.Module] = []
    if mixup > 0:
        choices.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0 and images:
        choices.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if not choices:
        return None
    transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return BatchMix(transform, num_classes, label_smoothing)


def build_train_loss(
    *, label_smoothing: float, weights: torch.Tensor | None = None, soft: bool = False
) -> nn.Module:
    """The training loss: cross-entropy, with class ``weights`` when given.

    Args:
        label_smoothing: Of hard targets; soft targets already hold it (see :class:`BatchMix`).
        weights: One weight per class (``None``: all 1).
        soft: The targets are probabilities ``[N, k]`` (mixed batches).
    """
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=0.0 if soft else label_smoothing)
