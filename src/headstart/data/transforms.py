"""Evaluation and training transforms built from a model's PreprocessSpec (torchvision v2)."""

from __future__ import annotations

from enum import Enum

import torch
from torchvision.transforms import InterpolationMode, v2

from headstart.errors import ConfigError, closest
from headstart.preprocessing import PreprocessSpec

__all__ = ["AUGMENT_PRESETS", "build_eval_transform", "build_train_transform"]

AUGMENT_PRESETS = ("none", "light", "standard")
"""Names of the training augmentation presets, weakest first."""

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def _to_normalized_tensor(pre: PreprocessSpec) -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
    ]


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


def build_train_transform(pre: PreprocessSpec, augment: str | Enum = "light") -> v2.Compose:
    """Build the training transform for an augmentation preset.

    Presets: ``none`` (the eval transform), ``light`` (random resized crop with scale 0.35-1 and a
    horizontal flip), ``standard`` (light + colour jitter 0.3 and a random affine of +-15 degrees,
    scale 0.9-1.1).

    Raises:
        ConfigError: ``augment`` is not one of ``AUGMENT_PRESETS``.
    """
    name = str(augment.value if isinstance(augment, Enum) else augment)
    if name not in AUGMENT_PRESETS:
        raise ConfigError(
            f"unknown augmentation preset {name!r}; use one of {', '.join(AUGMENT_PRESETS)}."
            f"{closest(name, AUGMENT_PRESETS)}"
        )
    if name == "none":
        return build_eval_transform(pre)
    interpolation = _INTERPOLATION[pre.interpolation]
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(
            pre.input_size, scale=(0.35, 1.0), interpolation=interpolation, antialias=True
        ),
        v2.RandomHorizontalFlip(),
    ]
    if name == "standard":
        steps += [
            v2.RandomAffine(degrees=15, scale=(0.9, 1.1), interpolation=interpolation),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
    return v2.Compose([*steps, *_to_normalized_tensor(pre)])
