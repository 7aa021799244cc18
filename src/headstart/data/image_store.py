"""The decoded-image store: every image of a set of files decoded, resized and cropped once.

An entry holds, for an ordered set of files, a uint8 (3, S, S) square per file in a memory-mapped
``.npy`` file (S = the eval transform's resize size), each file's resize geometry and the files
that could not be decoded. The square is the image resized as torchvision's ``Resize`` resizes a
PIL image (short side S, the same Pillow filter) and centre-cropped, so it always contains the
eval crop: evaluation reads that crop bit for bit equal to the PIL path, training augments the
square. This module needs no torch: the audit fills an entry in the same read of each file
(``audit.read_pass.read_files``, in worker processes that write their rows straight into the
file).

The key hashes the square's size, filter and pixel limit, and each file's path, size and
modification time, so an edited file makes a new entry. An entry is complete once its
``meta.json`` is written; entries beyond the cache budget are evicted least recently used first,
and an entry larger than the budget is not written at all (training then decodes every epoch).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.data.cache_store import (
    enforce_budget,
    file_signature,
    new_entry,
    publish_entry,
    read_entry,
    write_entry_meta,
)
from headstart.data.images import DEFAULT_MAX_PIXELS
from headstart.errors import DataError
from headstart.files import atomic_write
from headstart.preprocessing import PreprocessSpec

__all__ = [
    "DecodedImageCache",
    "SquareSpec",
    "StoreWriter",
    "open_store",
    "square_of",
    "store_key",
]

_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_VERSION = "v3"  # v3: one entry per set of files, rows found by path


@dataclass(frozen=True)
class SquareSpec:
    """What a store's squares are: side, Pillow filter name, and the pixel limit that decides
    which files fail (see ``images.decode_image``)."""

    size: int
    interpolation: str = "bilinear"
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def of(cls, pre: PreprocessSpec, max_pixels: int = DEFAULT_MAX_PIXELS) -> SquareSpec:
        """The squares the eval transform of ``pre`` crops from (side ``pre.resize_size``)."""
        return cls(pre.resize_size, pre.interpolation, max_pixels)

    def nbytes(self, count: int) -> int:
        """Disk bytes of ``count`` squares."""
        return count * 3 * self.size * self.size


def square_of(image: Image.Image, spec: SquareSpec) -> tuple[np.ndarray, tuple[int, ...]]:
    """Resize ``image`` (RGB) as ``torchvision.transforms.v2.Resize(spec.size)`` resizes a PIL
    image and crop the centred square; return it as uint8 (3, S, S) and (height, width, top, left)
    of the resized image and the square in it."""
    width, height = image.size
    size = spec.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)  # torchvision's own rounding of the long side
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample=_PIL_FILTERS[spec.interpolation])
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    square = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return square.transpose(2, 0, 1), (new_h, new_w, top, left)


def store_key(paths: Sequence[str], spec: SquareSpec) -> str:
    """The entry name of ``paths`` (in order) at ``spec``: any edited file changes it."""
    digest = hashlib.sha256(
        f"{_VERSION}\0{spec.size}\0{spec.interpolation}\0{spec.max_pixels}\n".encode()
    )
    for path in paths:
        digest.update(f"{file_signature(path)}\n".encode())
    return digest.hexdigest()[:24]


class DecodedImageCache:
    """A complete entry, read-only. Rows are read with ``pread`` rather than memory-mapped, so
    the pages an epoch reads stay in the kernel's page cache and out of the process's RSS.

    Attributes:
        folder: The entry's folder.
        geometry: int32 array (N, 4): resized height, width, and the square's top, left in it.
        failures: Path -> reason for each file that could not be decoded.
        size: S.
    """

    def __init__(self, folder: Path) -> None:
        meta = read_entry(folder)
        if meta is None:
            raise DataError(f"decoded-image cache {folder} is incomplete; delete it and rerun.")
        self.folder = folder
        mapped = np.load(folder / "pixels.npy", mmap_mode="r")
        self._count, self._offset = len(mapped), mapped.offset
        del mapped
        self._fd: tuple[int, int] | None = None  # (pid, descriptor): reopened in a new process
        self.geometry = np.load(folder / "geometry.npy")
        self.failures: dict[str, str] = meta["failures"]
        self.size = int(meta["size"])
        self.interpolation = str(meta.get("interpolation", ""))
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Disk bytes of the squares (the rest of the entry is small)."""
        return SquareSpec(self.size).nbytes(len(self))

    @functools.cached_property
    def pixels(self) -> np.ndarray:
        """Every square, uint8 (N, 3, S, S), memory-mapped (rows of unreadable files are zero)."""
        return np.load(self.folder / "pixels.npy", mmap_mode="r")

    def __getstate__(self) -> dict[str, object]:
        state = {**self.__dict__, "_fd": None}  # a descriptor means nothing in another process
        state.pop("pixels", None)  # nor does a memory map (it would pickle as a copy)
        return state

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._fd[0] == os.getpid():
            os.close(self._fd[1])

    def square(self, row: int) -> np.ndarray:
        """The stored uint8 (3, S, S) square of ``row`` (a copy of its own)."""
        if not hasattr(os, "preadv"):  # Windows: from the memory map
            return np.array(self.pixels[row])
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.folder / "pixels.npy", os.O_RDONLY))
        square = np.empty((3, self.size, self.size), dtype=np.uint8)
        os.preadv(self._fd[1], [square], self._offset + row * square.nbytes)  # one copy
        return square

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """The row of each of ``paths``.

        Raises:
            DataError: A path is not in this entry.
        """
        if self._index is None:
            held = json.loads((self.folder / "paths.json").read_text())
            self._index = {p: i for i, p in enumerate(held)}
        index = self._index
        missing = [p for p in paths if p not in index]
        if missing:
            raise DataError(
                f"the decoded-image cache {self.folder} does not hold {missing[0]} (and "
                f"{len(missing) - 1} more); build the cache from the same files."
            )
        return np.array([index[p] for p in paths], dtype=np.int64)

    def holds(self, paths: Sequence[str] = (), pre: PreprocessSpec | None = None) -> bool:
        """Whether every one of ``paths`` has a row here and, given ``pre``, the squares are the
        ones its eval transform crops from (its resize size and filter)."""
        if pre is not None and (self.size, self.interpolation) != (
            pre.resize_size, pre.interpolation
        ):
            return False
        try:
            self.rows(paths)
        except (DataError, OSError):  # OSError: the entry was evicted meanwhile
            return False
        return True

    def eval_crop(self, row: int, input_size: int) -> np.ndarray:
        """The eval centre crop of ``input_size``, exactly as ``build_eval_transform`` crops it."""
        height, width, top, left = (int(v) for v in self.geometry[row])
        y = int(round((height - input_size) / 2.0)) - top
        x = int(round((width - input_size) / 2.0)) - left
        return self.square(row)[:, y : y + input_size, x : x + input_size].copy()


def open_store(root: Path, paths: Sequence[str], spec: SquareSpec) -> DecodedImageCache | None:
    """The complete entry of ``paths`` at ``spec`` under ``root``, or None."""
    folder = root / store_key(paths, spec)
    return DecodedImageCache(folder) if read_entry(folder) is not None else None


class StoreWriter:
    """A new entry being filled: rows are written by index (from any process), then ``finish``
    publishes it (``create`` makes room for it in the budget first).

    Args:
        root: Folder of entries.
        paths: The files, in row order.
        spec: The squares.
    """

    def __init__(self, root: Path, paths: Sequence[str], spec: SquareSpec) -> None:
        self.paths, self.spec, self.root = list(paths), spec, root
        self.key = store_key(self.paths, spec)
        self.folder = new_entry(root, self.key)  # published as root/key by finish()
        shape = (len(self.paths), 3, spec.size, spec.size)
        np.lib.format.open_memmap(self.pixels_file, mode="w+", dtype=np.uint8, shape=shape)
        self.geometry = np.zeros((len(self.paths), 4), dtype=np.int32)
        self.failures: dict[str, str] = {}

    @classmethod
    def create(
        cls, root: Path, paths: Sequence[str], spec: SquareSpec, budget_bytes: int
    ) -> StoreWriter | None:
        """A writer for a new entry, after evicting older entries of ``root`` (and of the other
        cache folders sharing the budget) to make room; None if the entry alone is larger than
        ``budget_bytes`` (the caller then decodes as it goes, caching nothing)."""
        needed = spec.nbytes(len(paths))
        if needed > budget_bytes:
            return None
        enforce_budget(root, budget_bytes - needed)
        return cls(root, paths, spec)

    @property
    def pixels_file(self) -> Path:
        return self.folder / "pixels.npy"

    def discard(self) -> None:
        """Delete the entry being written (a failed or interrupted fill)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self) -> DecodedImageCache:
        """Write the geometry, paths and failures, mark the entry complete and open it."""
        np.save(self.folder / "geometry.npy", self.geometry)
        atomic_write(self.folder / "paths.json", json.dumps(self.paths))
        meta = {
            "size": self.spec.size, "interpolation": self.spec.interpolation,
            "count": len(self.paths), "failures": self.failures,
        }  # fmt: skip
        write_entry_meta(self.folder, meta)
        return DecodedImageCache(publish_entry(self.folder, self.root, self.key))
