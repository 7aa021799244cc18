"""The bundled default model recognises a real photo (its ImageNet weights are wired right)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.preprocessing import PreprocessSpec


def preprocess(image: Image.Image, pre: PreprocessSpec) -> torch.Tensor:
    """Resize the short side to input/crop_pct, centre-crop, scale and normalise (plain PIL)."""
    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
    width, height = image.size
    scale = pre.resize_size / min(width, height)
    size = (max(pre.input_size, round(width * scale)), max(pre.input_size, round(height * scale)))
    image = image.resize(size, filters[pre.interpolation])
    left, top = (size[0] - pre.input_size) // 2, (size[1] - pre.input_size) // 2
    image = image.crop((left, top, left + pre.input_size, top + pre.input_size))
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    return ((array - mean) / std)[None]


CATS = ("tabby", "tiger cat", "Egyptian cat")


def classify(model, spec, image) -> torch.Tensor:
    batch = preprocess(Image.fromarray(image).convert("RGB"), spec.preprocessing)
    with torch.no_grad():
        return model(batch).softmax(dim=1)[0]


def test_lite0_classifies_chelsea_as_a_cat(lite0) -> None:
    """Chelsea is a tabby-like cat: ImageNet splits her between three cat classes.

    The top class must be one of them and their summed probability above 0.5 (about 0.9 here; the
    top class alone gets about 0.38, so a single-class threshold would test the photo, not us).
    """
    skimage_data = pytest.importorskip("skimage.data")
    model, spec = lite0
    probs = classify(model, spec, skimage_data.chelsea())
    assert spec.categories[int(probs.argmax())] in CATS
    assert sum(float(probs[spec.categories.index(c)]) for c in CATS) > 0.5


def test_lite0_classifies_coffee_as_espresso(lite0) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    model, spec = lite0
    probs = classify(model, spec, skimage_data.coffee())
    top = int(probs.argmax())
    assert spec.categories[top] == "espresso" and float(probs[top]) > 0.5
