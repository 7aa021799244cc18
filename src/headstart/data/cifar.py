"""The built-in ``cifar10`` dataset, from CIFAR-10's binary version (nothing is unpickled).

On first use the archive is downloaded (or taken from a local copy) into
``<cache>/datasets/cifar10`` and written once as PNG class folders ``train/<class>/`` and
``test/<class>/``; a ``.complete`` marker says the folders are whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.data.written import mark_cache_root
from headstart.errors import DataError
from headstart.files import atomic_write, cache_dir

__all__ = ["CIFAR10_MD5", "CIFAR10_URL", "default_cache_dir", "prepare_cifar10"]

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_ARCHIVE = "cifar-10-binary.tar.gz"
_BATCHES = "cifar-10-batches-bin"
_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST_FILES = ("test_batch.bin",)
_RECORD = 1 + 3 * 32 * 32
_MARKER = ".complete"


def default_cache_dir() -> Path:
    """Return headstart's cache folder (see ``headstart.files.cache_dir``)."""
    return cache_dir()


def prepare_cifar10(cache_dir: str | Path | None = None) -> Path:
    """Make sure CIFAR-10 exists as PNG class folders; return the folder holding train/ and test/.

    Args:
        cache_dir: Cache root (default ``default_cache_dir()``).

    Raises:
        DataError: The archive cannot be downloaded and there is no local copy, or it is malformed.
    """
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = folder / "datasets" / "cifar10"
    if (folder / _MARKER).exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    mark_cache_root(folder)
    batches = _find_batches(folder)
    _write_png_folders(batches, folder)
    return folder


def _find_batches(folder: Path) -> Path:
    batches = folder / _BATCHES
    if _has_batches(batches):
        return batches
    archive = folder / _ARCHIVE
    if archive.is_file():
        log.info("extracting local copy %s", archive)
        _extract(archive, folder)
    else:
        log.info("downloading CIFAR-10 (binary, 163 MB) into %s", folder)
        try:
            _download(folder)
        except Exception as exc:  # noqa: BLE001 - network errors come in many types
            archive.unlink(missing_ok=True)  # a partial download would be mistaken for a copy
            raise DataError(
                f"cannot download CIFAR-10 ({exc.__class__.__name__}: {exc}); put a local copy of "
                f"{_ARCHIVE} or its extracted {_BATCHES} folder in {folder} and try again."
            ) from None
    if not _has_batches(batches):
        raise DataError(
            f"{archive} did not contain {_BATCHES}/ with {', '.join(_TRAIN_FILES + _TEST_FILES)} "
            f"and batches.meta.txt; replace it with the binary version from {CIFAR10_URL}."
        )
    return batches


def _has_batches(batches: Path) -> bool:
    names = (*_TRAIN_FILES, *_TEST_FILES, "batches.meta.txt")
    return all((batches / name).is_file() for name in names)


def _download(folder: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10_URL, str(folder), filename=_ARCHIVE, md5=CIFAR10_MD5)


def _extract(archive: Path, folder: Path) -> None:
    """Extract only the ``cifar-10-batches-bin/`` files and folders, refusing unsafe paths."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(_BATCHES) and (m.isfile() or m.isdir())
            ]
            if any(Path(m.name).is_absolute() or ".." in Path(m.name).parts for m in members):
                raise ValueError("the archive holds unsafe paths")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(folder, members=members, filter="data")
            else:  # Python < 3.10.12: the checks above stand in for the filter
                tar.extractall(folder, members=members)
    except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
        raise DataError(
            f"cannot extract {archive}: {exc}; delete it and download it again from {CIFAR10_URL}."
        ) from None


def read_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR binary batch into (N, 32, 32, 3) uint8 images and (N,) labels."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise DataError(
            f"{path} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of "
            f"{_RECORD}); replace it with the binary version from {CIFAR10_URL}."
        )
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= num_classes:
        raise DataError(f"{path} has label {labels.max()} but only {num_classes} classes.")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def read_class_names(batches: Path) -> list[str]:
    """Read the class names from ``batches.meta.txt``."""
    names = [line.strip() for line in (batches / "batches.meta.txt").read_text().splitlines()]
    names = [n for n in names if n]
    if len(names) < 2 or any("/" in n or n.startswith(".") for n in names):
        raise DataError(f"{batches / 'batches.meta.txt'} does not list the class names.")
    return names


def _write_png_folders(batches: Path, folder: Path) -> None:
    """Write train/ and test/ PNG class folders via a temporary folder, then the marker."""
    names = read_class_names(batches)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder))
    try:
        for split, files in (("train", _TRAIN_FILES), ("test", _TEST_FILES)):
            log.info("writing CIFAR-10 %s images as PNG files", split)
            _write_split(batches, files, names, tmp / split)
        for split in ("train", "test"):
            if (folder / split).exists():
                shutil.rmtree(folder / split)  # left by an interrupted run (no marker)
            os.replace(tmp / split, folder / split)
        atomic_write(folder / _MARKER, "ok\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_split(batches: Path, files: tuple[str, ...], names: list[str], dest: Path) -> None:
    for name in names:
        (dest / name).mkdir(parents=True)
    index = 0
    for file in files:
        images, labels = read_batch(batches / file, len(names))
        for image, label in zip(images, labels, strict=True):
            Image.fromarray(np.ascontiguousarray(image)).save(
                dest / names[label] / f"{index:05d}.png"
            )
            index += 1
