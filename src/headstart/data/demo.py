"""The packaged demo dataset: a class-balanced subset of Fashion-MNIST (MIT licence).

``materialize_demo_data(dest)`` writes it as ``dest/train/<class>/*.png`` and
``dest/test/<class>/*.png`` (images from Fashion-MNIST's own test file, held out from training),
ready for ``load_splits``, which carves a validation split off ``train/``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.errors import DataError

__all__ = ["DEMO_CLASSES", "demo_class_folder", "load_demo_arrays", "materialize_demo_data"]

log = logging.getLogger(__name__)

DEMO_FILE = "fashion_mnist_subset.npz"
DEMO_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_MARKER = ".headstart-demo"


def demo_class_folder(name: str) -> str:
    """Return a filesystem-safe folder name for a class, e.g. ``T-shirt/top`` -> ``T-shirt_top``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def load_demo_arrays() -> dict[str, np.ndarray]:
    """Load the packaged arrays: classes, train/val images (N, 28, 28) uint8 and labels."""
    source = resources.files("headstart.data").joinpath("demo_data", DEMO_FILE)
    with source.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def materialize_demo_data(dest: str | Path) -> Path:
    """Write the demo dataset as PNG class folders under ``dest`` and return ``dest``.

    Idempotent: a folder written before is returned as is.

    Raises:
        DataError: ``dest`` exists, is not empty and was not written by this function.
    """
    dest = Path(dest).expanduser()
    if (dest / _MARKER).exists():
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(
            f"{dest} exists and is not an empty folder; choose a new folder for the demo data."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    arrays = load_demo_arrays()
    folders = [demo_class_folder(str(name)) for name in arrays["classes"]]
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for key, split in (("train", "train"), ("val", "test")):
            images, labels = arrays[f"{key}_images"], arrays[f"{key}_labels"]
            for folder in folders:
                (tmp / split / folder).mkdir(parents=True)
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                Image.fromarray(image).save(tmp / split / folders[label] / f"{i:04d}.png")
        (tmp / _MARKER).write_text("Fashion-MNIST subset (c) 2017 Zalando SE, MIT licence\n")
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote the demo dataset (%d classes) to %s", len(folders), dest)
    return dest
