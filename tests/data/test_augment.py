"""What each augmentation setting does to the pixels: flips, random erasing, the strong presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from headstart.config import Augment
from headstart.data.transforms import AUGMENT_PRESETS, build_train_transform
from headstart.errors import ConfigError
from headstart.preprocessing import PreprocessSpec

SPEC = PreprocessSpec(input_size=24, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), crop_pct=0.75)
LOW = torch.tensor([(0 - m) / s for m, s in zip(SPEC.mean, SPEC.std)])[:, None, None]
HIGH = torch.tensor([(1 - m) / s for m, s in zip(SPEC.mean, SPEC.std)])[:, None, None]
TRAIN = [p for p in AUGMENT_PRESETS if p != "none"]


def _gradient() -> torch.Tensor:
    """uint8 (3, 48, 48), bright on the left and dark on the right: a mirror reverses it."""
    row = torch.linspace(255, 0, 48).round().to(torch.uint8)
    return row.expand(3, 48, 48).clone()


def _noise(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 52, 3), dtype=np.uint8)


def _inputs(pixels: np.ndarray) -> list[object]:
    """The same picture as the PIL path and the decoded-image cache's path see it."""
    tensor = v2.functional.to_image(torch.from_numpy(pixels.transpose(2, 0, 1).copy()))
    return [Image.fromarray(pixels), tensor]


def _draws(transform: v2.Transform, image: object, n: int, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return [transform(image) for _ in range(n)]


def _mirrored(out: torch.Tensor) -> bool:
    return bool(out[:, :, :6].mean() < out[:, :, -6:].mean())


def _erased_box(out: torch.Tensor) -> int:
    """Area of the rectangle erased to 0 in every channel (0 if none); asserts it is a rectangle."""
    mask = (out == 0).all(dim=0)
    if not mask.any():
        return 0
    rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
    box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert box.all(), "the erased pixels do not form one rectangle"
    return box.numel()


@pytest.mark.parametrize("preset", ["light", "standard"])
def test_no_hflip_never_mirrors(preset: str) -> None:
    image = v2.functional.to_image(_gradient())
    for pil in (False, True):
        source = v2.functional.to_pil_image(image) if pil else image
        off = _draws(build_train_transform(SPEC, preset, hflip=False), source, 150)
        assert not any(_mirrored(out) for out in off)
        on = _draws(build_train_transform(SPEC, preset, hflip=True), source, 150)
        assert 40 < sum(_mirrored(out) for out in on) < 110  # the check does see a mirror


@pytest.mark.parametrize("preset", TRAIN)
def test_no_hflip_leaves_no_flip_step(preset: str) -> None:
    steps = build_train_transform(SPEC, preset, hflip=False).transforms
    assert not any(isinstance(s, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)) for s in steps)
    assert any(
        isinstance(s, v2.RandomHorizontalFlip)
        for s in build_train_transform(SPEC, preset).transforms
    )


def test_hflip_none_means_true() -> None:
    image = _inputs(_noise())[1]
    a = _draws(build_train_transform(SPEC, "light", hflip=None), image, 20)
    b = _draws(build_train_transform(SPEC, "light", hflip=True), image, 20)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_random_erasing_always_or_never(preset: str) -> None:
    for image in _inputs(_noise()):
        always = _draws(build_train_transform(SPEC, preset, random_erasing=1.0), image, 40)
        assert all(_erased_box(out) >= 6 for out in always)  # ~2% of 24x24, rounded
        never = _draws(build_train_transform(SPEC, preset, random_erasing=0.0), image, 40)
        assert all(_erased_box(out) == 0 for out in never)
        plain = _draws(build_train_transform(SPEC, preset), image, 40)
        assert all(torch.equal(x, y) for x, y in zip(never, plain))  # 0 is off: same draws


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_random_erasing_outside_0_1_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_train_transform(SPEC, "light", random_erasing=bad)


@pytest.mark.parametrize("preset", ["trivial", "randaugment"])
def test_strong_presets_change_pixels_and_keep_the_format(preset: str) -> None:
    for image in _inputs(_noise()):
        light = _draws(build_train_transform(SPEC, "light"), image, 30)
        strong = _draws(build_train_transform(SPEC, preset), image, 30)
        assert sum(not torch.equal(a, b) for a, b in zip(light, strong)) >= 20
        for out in strong:
            assert out.shape == (3, 24, 24) and out.dtype == torch.float32
            assert ((out >= LOW - 1e-5) & (out <= HIGH + 1e-5)).all()


def _original(pre: PreprocessSpec, standard: bool) -> v2.Compose:
    """``light`` / ``standard`` as they were before the strong presets (runs must not change)."""
    mode = InterpolationMode(pre.interpolation)
    steps = [
        v2.RandomResizedCrop(pre.input_size, scale=(0.35, 1.0), interpolation=mode, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if standard:
        steps += [
            v2.RandomAffine(degrees=15, scale=(0.9, 1.1), interpolation=mode),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
    return v2.Compose(
        [
            *steps,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(pre.mean, pre.std),
        ]
    )


@pytest.mark.parametrize("preset", ["light", "standard"])
def test_light_and_standard_are_unchanged(preset: str) -> None:
    for image in _inputs(_noise()):
        ours = _draws(build_train_transform(SPEC, preset), image, 20, seed=3)
        before = _draws(_original(SPEC, preset == "standard"), image, 20, seed=3)
        assert all(torch.equal(a, b) for a, b in zip(ours, before))


@pytest.mark.parametrize("preset", ["standard", "trivial", "randaugment"])
def test_bicubic_models_augment_tensors_and_pil(preset: str) -> None:
    bicubic = PreprocessSpec(input_size=24, interpolation="bicubic")
    pil, tensor = _inputs(_noise())
    from_pil = _draws(build_train_transform(bicubic, preset), pil, 10, seed=5)
    # torchvision has no bicubic affine for tensors: the cache's path must not crash
    from_tensor = _draws(build_train_transform(bicubic, preset), tensor, 10, seed=5)
    assert all(a.shape == b.shape == (3, 24, 24) for a, b in zip(from_pil, from_tensor))
    if preset == "standard":  # PIL keeps the model's bicubic resampling, as before
        before = _draws(_original(bicubic, standard=True), pil, 10, seed=5)
        assert all(torch.equal(a, b) for a, b in zip(from_pil, before))


def test_presets_are_the_config_choices() -> None:
    assert AUGMENT_PRESETS == tuple(a.value for a in Augment)
    with pytest.raises(ConfigError, match="use one of none, light, standard, trivial, randaugment"):
        build_train_transform(SPEC, "randaug")
