"""Shared fixtures: tiny generated image folders (offline, fast)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 60, 220), (230, 200, 40), (160, 60, 200))


def write_image(path: Path, colour: Sequence[int], size: tuple[int, int], seed: int) -> Path:
    """Write a noisy one-colour image; ``size`` is (width, height); the suffix picks the format."""
    rng = np.random.default_rng(seed)
    width, height = size
    noise = rng.integers(-30, 31, size=(height, width, 3))
    pixels = np.clip(np.asarray(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _write_classes(folder: Path, classes: Sequence[str], n: int, size, ext: str, seed: int) -> None:
    for c, name in enumerate(classes):
        colour = _COLOURS[c % len(_COLOURS)]
        for i in range(n):
            write_image(folder / name / f"{name}_{i:03d}{ext}", colour, size, seed + 1000 * c + i)


def make_image_folder(
    root: Path,
    classes: Sequence[str] = ("cat", "dog"),
    n: int = 6,
    size: tuple[int, int] = (40, 32),
    layout: str = "flat",
    *,
    n_val: int = 2,
    n_test: int = 0,
    ext: str = ".png",
) -> Path:
    """Write generated images, one colour per class, and return ``root``.

    Args:
        root: Folder to write into (created).
        classes: Class folder names.
        n: Images per class (in ``train/`` for the ``split`` layout).
        size: (width, height) of each image.
        layout: ``flat`` writes ``root/<class>/``; ``split`` writes ``root/train/<class>/``,
            ``root/val/<class>/`` (``n_val`` each) and, when ``n_test`` > 0, ``root/test/<class>/``.
        n_val: Validation images per class for the ``split`` layout.
        n_test: Test images per class for the ``split`` layout.
        ext: File suffix, which picks the format (``.png``, ``.jpg``, ...).
    """
    root = Path(root)
    if layout == "flat":
        _write_classes(root, classes, n, size, ext, seed=0)
    elif layout == "split":
        _write_classes(root / "train", classes, n, size, ext, seed=0)
        _write_classes(root / "val", classes, n_val, size, ext, seed=100)
        if n_test:
            _write_classes(root / "test", classes, n_test, size, ext, seed=200)
    else:
        raise ValueError(f"unknown layout {layout!r}; use 'flat' or 'split'")
    return root


@pytest.fixture
def image_folder_factory() -> Callable[..., Path]:
    """Return the factory ``make_image_folder(root, classes, n, size, layout="flat"|"split")``."""
    return make_image_folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep headstart's caches (features, decoded images, tuning) out of the user's home."""
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path_factory.getbasetemp() / "headstart-cache"))
