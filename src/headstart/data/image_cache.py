"""Decoded-image cache: decode, orient and resize each image once, then train from uint8 on disk.

Each image is decoded with ``decode_image``, resized with the eval transform's own ``Resize``
(short side = ``pre.resize_size``) and centre-cropped to a ``resize_size`` square, which is stored
as uint8 (3, S, S) in a memory-mapped ``.npy`` file under ``cache_dir()/images/<key>/``. Epochs
after the first skip decoding; random crops and flips run on the cached uint8 tensors. The eval
output equals the PIL path bit for bit: the square always contains the eval crop, whose offset is
stored per image. Training crops see the stored square, not the parts of a non-square image
outside it.

The key hashes the resize settings, the pixel limit (which decides what fails) and each file's
path, size and modification time, so an edited file gives a new entry (v2: size limits checked
from the header, ``images.decode_image``). Entries beyond a size budget are evicted, least
recently used first.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from headstart.data.cache_store import (
    DEFAULT_BUDGET_BYTES,
    enforce_budget,
    read_entry,
    samples_digest,
    write_entry_meta,
)
from headstart.data.folders import Sample
from headstart.data.images import DEFAULT_MAX_PIXELS, decode_image
from headstart.data.transforms import build_random_erasing, build_train_transform
from headstart.data.written import mark_cache_root
from headstart.errors import DataError
from headstart.files import cache_dir
from headstart.preprocessing import PreprocessSpec
from headstart.progress import report

__all__ = ["CachedImageDataset", "DecodedImageCache", "build_decoded_cache"]

log = logging.getLogger(__name__)


class DecodedImageCache:
    """Resized uint8 images of a list of samples, memory-mapped from disk.

    Attributes:
        folder: The entry's folder.
        pixels: uint8 array (N, 3, S, S); rows of unreadable images are zero.
        geometry: int32 array (N, 4): resized height, width, and the square's top, left in it.
        failures: Path -> reason for each image that could not be decoded.
    """

    def __init__(self, folder: Path) -> None:
        meta = read_entry(folder)
        if meta is None:
            raise DataError(f"decoded-image cache {folder} is incomplete; delete it and rerun.")
        self.folder = folder
        self.pixels = np.load(folder / "pixels.npy", mmap_mode="r")
        self.geometry = np.load(folder / "geometry.npy")
        self.failures: dict[str, str] = meta["failures"]
        self.size = int(meta["size"])

    def __len__(self) -> int:
        return len(self.pixels)

    def image(self, index: int) -> torch.Tensor:
        """The stored uint8 (3, S, S) tensor of image ``index`` (a copy)."""
        return torch.from_numpy(np.array(self.pixels[index]))

    def eval_crop(self, index: int, input_size: int) -> torch.Tensor:
        """The eval centre crop of ``input_size``, exactly as ``build_eval_transform`` crops it."""
        height, width, top, left = (int(v) for v in self.geometry[index])
        y = int(round((height - input_size) / 2.0)) - top
        x = int(round((width - input_size) / 2.0)) - left
        tile = self.pixels[index, :, y : y + input_size, x : x + input_size]
        return torch.from_numpy(np.array(tile))


def _interpolation(pre: PreprocessSpec) -> InterpolationMode:
    return InterpolationMode(pre.interpolation)


def _decode_square(path: str, resize: v2.Resize, size: int, max_pixels: int) -> tuple[Any, ...]:
    """Decode + resize like the eval path; return the (3, S, S) square and its geometry."""
    image = resize(decode_image(path, max_pixels=max_pixels, resize_to=size))
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    square = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return square.transpose(2, 0, 1), (height, width, top, left)


def build_decoded_cache(
    samples: Sequence[Sample],
    pre: PreprocessSpec,
    *,
    root: Path | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImageCache:
    """Open the cache entry of ``samples`` at ``pre.resize_size``, decoding it first if needed.

    Args:
        samples: The images, in dataset order.
        pre: Preprocessing; only ``resize_size`` and ``interpolation`` matter here.
        root: Folder of entries (default ``cache_dir()/images``).
        budget_bytes: Older entries beyond this total size are deleted.
        max_pixels: See ``decode_image``.
    """
    root = Path(root) if root is not None else cache_dir() / "images"
    size = pre.resize_size
    key = hashlib.sha256(
        f"v2\0{size}\0{pre.interpolation}\0{max_pixels}\0{samples_digest(samples)}".encode()
    ).hexdigest()[:24]
    folder = root / key
    if read_entry(folder) is not None:
        return DecodedImageCache(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    mark_cache_root(folder)
    needed = len(samples) * 3 * size * size
    enforce_budget(root, max(0, budget_bytes - needed), keep=folder)
    start = time.perf_counter()
    pixels = np.lib.format.open_memmap(
        folder / "pixels.npy", mode="w+", dtype=np.uint8, shape=(len(samples), 3, size, size)
    )
    geometry = np.zeros((len(samples), 4), dtype=np.int32)
    resize = v2.Resize(size, interpolation=_interpolation(pre), antialias=True)
    failures: dict[str, str] = {}
    for i, sample in enumerate(samples):
        try:
            pixels[i], geometry[i] = _decode_square(sample.path, resize, size, max_pixels)
        except DataError as exc:
            failures[sample.path] = str(exc)
            log.warning("skipping %s in the decoded-image cache: %s", sample.path, exc)
        report("decoding images into the cache", i + 1, len(samples))
    pixels.flush()
    del pixels
    np.save(folder / "geometry.npy", geometry)
    write_entry_meta(folder, {"size": size, "count": len(samples), "failures": failures})
    log.info(
        "decoded %d images into %s (%.1f MB) in %.1fs",
        len(samples), folder, needed / 1e6, time.perf_counter() - start,
    )  # fmt: skip
    return DecodedImageCache(folder)


class CachedImageDataset(Dataset):
    """Yields ``(tensor, label)`` like ``ImageDataset``, from a :class:`DecodedImageCache`.

    With ``augment=None`` (validation) the output equals ``build_eval_transform(pre)`` on the
    decoded image; ``"none"`` is the same plus random erasing when asked for. Otherwise the
    training transform of the preset (``build_train_transform``) runs on the cached uint8 square
    (random resized crop, flip, ...), which is converted to float only to be normalised.

    Args:
        samples: The images and labels, in the order the cache was built with.
        pre: The model's preprocessing spec (input size, mean, std).
        augment: Augmentation preset, or ``None`` for the eval transform.
        cache: The cache of ``samples``; built (or opened) with default settings if omitted.
        hflip: Random horizontal flips (``None`` means ``True``); training presets only.
        random_erasing: Probability of erasing a rectangle after normalisation; ignored when
            ``augment`` is ``None``.

    Attributes:
        failures: Path -> reason for images that could not be decoded (they are substituted by the
            next readable sample, as ``ImageDataset`` does).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        pre: PreprocessSpec,
        augment: str | Enum | None = None,
        cache: DecodedImageCache | None = None,
        *,
        hflip: bool | None = True,
        random_erasing: float = 0.0,
    ) -> None:
        self.samples = list(samples)
        self.pre = pre
        self.cache = cache if cache is not None else build_decoded_cache(self.samples, pre)
        if len(self.cache) != len(self.samples):
            raise DataError(
                f"the decoded-image cache holds {len(self.cache)} images but {len(self.samples)} "
                "samples were given; build the cache from the same samples."
            )
        name = None if augment is None else str(getattr(augment, "value", augment))
        self.augment = (
            None
            if name in (None, "none")
            else build_train_transform(pre, name, hflip=hflip, random_erasing=random_erasing)
        )
        steps = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(pre.mean), list(pre.std))]
        erase = build_random_erasing(random_erasing) if name == "none" else None
        self.normalize = v2.Compose(steps + ([] if erase is None else [erase]))
        self.failures = dict(self.cache.failures)
        self._bad = {i for i, s in enumerate(self.samples) if s.path in self.failures}
        if len(self._bad) == len(self.samples) and self.samples:
            raise DataError(
                f"none of the {len(self.samples)} images could be decoded (e.g. "
                f"{self.samples[0].path}); check the data folder."
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.samples)
        while index % n in self._bad:
            index += 1
        index %= n
        if self.augment is None:
            return self.normalize(self.cache.eval_crop(index, self.pre.input_size)), self.samples[
                index
            ].label
        image = v2.functional.to_image(self.cache.image(index))
        return self.augment(image), self.samples[index].label

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return [s.label for s in self.samples]
