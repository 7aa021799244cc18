"""Evaluation and training transforms built from a model's PreprocessSpec (torchvision v2)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from headstart.errors import ConfigError, closest
from headstart.preprocessing import PreprocessSpec

__all__ = [
    "AUGMENT_PRESETS",
    "build_eval_transform",
    "build_random_erasing",
    "build_train_transform",
    "to_normalized",
]

AUGMENT_PRESETS = ("none", "light", "standard", "trivial", "randaugment")
"""Names of the training augmentation presets, weakest first."""

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def to_normalized(pre: PreprocessSpec) -> list[v2.Transform]:
    """uint8 image tensors to the model's normalised float32 input (how every transform ends)."""
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
    ]


def _to_normalized_tensor(pre: PreprocessSpec) -> list[v2.Transform]:
    return [v2.ToImage(), *to_normalized(pre)]


def build_eval_transform(pre: PreprocessSpec) -> v2.Compose:
    """Resize the short side to ``pre.resize_size``, centre-crop ``pre.input_size``, normalise.

    The input is an RGB PIL image (as returned by ``decode_image``); the output a float32 tensor of
    shape (3, input_size, input_size).
    """
    return v2.Compose(
        [
            v2.Resize(
                pre.resize_size, interpolation=_INTERPOLATION[pre.interpolation], antialias=True
            ),
            v2.CenterCrop(pre.input_size),
            *_to_normalized_tensor(pre),
        ]
    )


def build_train_transform(
    pre: PreprocessSpec,
    augment: str | Enum = "light",
    *,
    hflip: bool | None = True,
    random_erasing: float = 0.0,
) -> v2.Transform:
    """Build the training transform for an augmentation preset.

    Presets: ``none`` (the eval transform), ``light`` (random resized crop with scale 0.35-1 and a
    horizontal flip), ``standard`` (light + a random affine of +-15 degrees, scale 0.9-1.1, and
    colour jitter 0.3), ``trivial`` (light + TrivialAugmentWide), ``randaugment`` (light +
    RandAugment, 2 ops of magnitude 9). The colour and geometry ops run before the conversion to
    float, so uint8 tensors (the decoded-image cache) stay uint8 until normalisation; PIL images
    work too. Bicubic models use bilinear resampling for the affine ops on tensors (torchvision
    has no bicubic kernel there); PIL images keep bicubic.

    Args:
        pre: The model's preprocessing spec.
        augment: A name of ``AUGMENT_PRESETS`` (or an ``Augment``).
        hflip: Random horizontal flips; ``None`` (decide from the data) means ``True`` for now.
        random_erasing: Probability of erasing one random rectangle (to 0) after normalisation.

    Raises:
        ConfigError: ``augment`` is not one of ``AUGMENT_PRESETS``, or ``random_erasing`` is
            outside 0..1.
    """
    name = _preset_name(augment)
    erase = build_random_erasing(random_erasing)
    if name == "none":
        evaluate = build_eval_transform(pre)
        return evaluate if erase is None else v2.Compose([evaluate, erase])
    flip = hflip is None or bool(hflip)
    tail = _to_normalized_tensor(pre) + ([] if erase is None else [erase])
    pil = v2.Compose([*_augment_steps(pre, name, flip, pre.interpolation), *tail])
    if pre.interpolation != "bicubic" or name == "light":
        return pil
    tensor = v2.Compose([*_augment_steps(pre, name, flip, "bilinear"), *tail])
    return _ByInputType(pil=pil, tensor=tensor)


def build_random_erasing(probability: float) -> v2.RandomErasing | None:
    """``v2.RandomErasing`` with ``probability`` (on normalised tensors), or ``None`` when 0.

    Raises:
        ConfigError: ``probability`` is outside 0..1.
    """
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(
            f"random_erasing must be a probability between 0 and 1, got {probability!r}; "
            "use e.g. 0.25, or 0 to turn it off."
        )
    return v2.RandomErasing(p=probability, value=0) if probability > 0 else None


def _preset_name(augment: str | Enum) -> str:
    name = str(augment.value if isinstance(augment, Enum) else augment)
    if name not in AUGMENT_PRESETS:
        raise ConfigError(
            f"unknown augmentation preset {name!r}; use one of {', '.join(AUGMENT_PRESETS)}."
            f"{closest(name, AUGMENT_PRESETS)}"
        )
    return name


def _augment_steps(pre: PreprocessSpec, name: str, flip: bool, grid: str) -> list[v2.Transform]:
    """The uint8 steps of a preset; ``grid`` is the interpolation of the affine ops."""
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(
            pre.input_size,
            scale=(0.35, 1.0),
            interpolation=_INTERPOLATION[pre.interpolation],
            antialias=True,
        )
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    interpolation = _INTERPOLATION[grid]
    if name == "standard":
        steps += [
            v2.RandomAffine(degrees=15, scale=(0.9, 1.1), interpolation=interpolation),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
    elif name == "trivial":
        steps.append(v2.TrivialAugmentWide(interpolation=interpolation))
    elif name == "randaugment":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9, interpolation=interpolation))
    return steps


class _ByInputType(v2.Transform):
    """Runs ``pil`` on PIL images and ``tensor`` on tensors (same steps, same random draws)."""

    def __init__(self, *, pil: v2.Compose, tensor: v2.Compose) -> None:
        super().__init__()
        self.pil, self.tensor = pil, tensor

    def forward(self, *inputs: Any) -> Any:
        return (self.pil if isinstance(inputs[0], Image.Image) else self.tensor)(*inputs)
