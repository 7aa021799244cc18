"""The decoded-image cache as a dataset: train and validate from uint8 squares on disk.

Each image is decoded, resized (short side = ``pre.resize_size``) and centre-cropped to a square
once, into the decoded-image store (``image_store``; the audit of a run fills it in the same read
of each file, otherwise ``build_decoded_cache`` does, in worker processes). Epochs after that skip
decoding: random crops and flips run on the cached uint8 tensors, and the eval output equals the
PIL path bit for bit (the square always contains the eval crop, whose offset is stored per image).
Training crops see the stored square, not the parts of a non-square image outside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from headstart.data.audit.read_pass import read_files
from headstart.data.folders import Sample
from headstart.data.image_store import DecodedImageCache, SquareSpec, StoreWriter, open_store
from headstart.data.images import DEFAULT_MAX_PIXELS
from headstart.data.transforms import build_random_erasing, build_train_transform, to_normalized
from headstart.errors import DataError
from headstart.files import cache_budget, cache_dir
from headstart.preprocessing import PreprocessSpec

__all__ = [
    "CachedImageDataset",
    "DecodedImageCache",
    "build_decoded_cache",
    "cached_eval_inputs",
]

log = logging.getLogger(__name__)


def build_decoded_cache(
    samples: Sequence[Sample],
    pre: PreprocessSpec,
    *,
    root: Path | None = None,
    budget_bytes: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> DecodedImageCache | None:
    """Open the store entry of the files of ``samples`` at ``pre.resize_size``, decoding it first
    (in ``workers`` processes) if needed.

    Args:
        samples: The images.
        pre: Preprocessing; only ``resize_size`` and ``interpolation`` matter here.
        root: Folder of entries (default ``cache_dir()/images``).
        budget_bytes: Older entries beyond this total size are deleted; None is returned when
            the entry alone would be larger (decode as you go instead). Default:
            ``files.cache_budget()``.
        max_pixels: See ``decode_image``.
        workers: See ``read_pass.read_files``.
    """
    root = Path(root) if root is not None else cache_dir() / "images"
    spec = SquareSpec.of(pre, max_pixels)
    paths = sorted({s.path for s in samples})  # the audit's order: a resume finds its entry
    opened = open_store(root, paths, spec)
    if opened is not None:
        return opened
    budget = cache_budget() if budget_bytes is None else budget_bytes
    writer = StoreWriter.create(root, paths, spec, budget)
    if writer is None:
        return None
    start = time.perf_counter()
    try:
        read_files(
            paths, max_pixels=max_pixels, min_size=1, audit=[False] * len(paths), store=writer,
            workers=workers, task="decoding images into the cache",
        )  # fmt: skip
    except BaseException:
        writer.discard()
        raise
    for path, reason in writer.failures.items():
        log.warning("skipping %s in the decoded-image cache: %s", path, reason)
    log.info(
        "decoded %d images into %s (%.1f MB) in %.1fs",
        len(paths), writer.folder, spec.nbytes(len(paths)) / 1e6, time.perf_counter() - start,
    )  # fmt: skip
    return writer.finish()


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
        cache: A store entry holding the files of ``samples`` (in any order, others too); built
            (or opened) with default settings if omitted.
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
        built = cache if cache is not None else build_decoded_cache(self.samples, pre)
        if built is None:
            raise DataError(
                f"the decoded images of {len(self.samples)} files do not fit the cache budget; "
                "raise --cache-budget, or train with --no-cache."
            )
        self.cache = built
        self._rows = built.rows([s.path for s in self.samples])
        name = None if augment is None else str(getattr(augment, "value", augment))
        self.augment = (
            None
            if name in (None, "none")
            else build_train_transform(pre, name, hflip=hflip, random_erasing=random_erasing)
        )
        erase = build_random_erasing(random_erasing) if name == "none" else None
        self.normalize = v2.Compose(to_normalized(pre) + ([] if erase is None else [erase]))
        mine = {s.path for s in self.samples}
        self.failures = {p: r for p, r in self.cache.failures.items() if p in mine}
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
        row, label = int(self._rows[index]), self.samples[index].label
        if self.augment is None:
            crop = torch.from_numpy(self.cache.eval_crop(row, self.pre.input_size))
            return self.normalize(crop), label
        image = v2.functional.to_image(torch.from_numpy(self.cache.square(row)))
        return self.augment(image), label

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return [s.label for s in self.samples]


def cached_eval_inputs(
    cache: DecodedImageCache, paths: Sequence[str], pre: PreprocessSpec
) -> tuple[torch.Tensor | None, list[str | None]]:
    """The eval inputs of ``paths`` from ``cache`` (which holds them), like
    ``inference.predict.decode_images``: the readable ones stacked (None when none is), and per
    path None or why it could not be decoded. Equal bit for bit to ``build_eval_transform(pre)``
    on the decoded file."""
    normalize = v2.Compose(to_normalized(pre))
    errors = [cache.failures.get(p) for p in paths]
    rows = cache.rows([p for p, e in zip(paths, errors) if e is None])
    crops = [torch.from_numpy(cache.eval_crop(int(r), pre.input_size)) for r in rows]
    return (normalize(torch.stack(crops)) if crops else None), errors
