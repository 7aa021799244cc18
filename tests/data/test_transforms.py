"""Eval and train transforms built from a PreprocessSpec."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from headstart.config import Augment
from headstart.data.transforms import AUGMENT_PRESETS, build_eval_transform, build_train_transform
from headstart.errors import ConfigError
from headstart.preprocessing import PreprocessSpec

SPEC = PreprocessSpec(input_size=24, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), crop_pct=0.75)


def test_eval_transform_shape_and_normalisation() -> None:
    image = Image.new("RGB", (60, 40), (255, 128, 0))
    out = build_eval_transform(SPEC)(image)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    expected = [(255 / 255 - 0.5) / 0.2, (128 / 255 - 0.4) / 0.25, (0 - 0.3) / 0.5]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4)


def test_eval_transform_resizes_short_side_then_crops() -> None:
    transform = build_eval_transform(SPEC)
    assert SPEC.resize_size == 32
    # A tall image: the 32-pixel-wide resize keeps the stripe at the centre.
    image = Image.new("RGB", (40, 100), (0, 0, 0))
    image.paste((255, 255, 255), (0, 45, 40, 55))
    out = transform(image)
    assert out.shape == (3, 24, 24)
    assert out[0, 12, 12] > out[0, 0, 12]


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_train_presets(preset: str) -> None:
    torch.manual_seed(0)
    out = build_train_transform(SPEC, preset)(Image.new("RGB", (50, 37), (10, 200, 30)))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32


def test_train_none_equals_eval_and_enum_accepted() -> None:
    image = Image.new("RGB", (50, 37), (10, 200, 30))
    assert torch.equal(
        build_train_transform(SPEC, Augment.NONE)(image), build_eval_transform(SPEC)(image)
    )
    assert build_train_transform(SPEC, Augment.STANDARD)(image).shape == (3, 24, 24)


def test_unknown_preset_lists_choices() -> None:
    with pytest.raises(ConfigError, match="none, light, standard.*Did you mean: light"):
        build_train_transform(SPEC, "lihgt")
