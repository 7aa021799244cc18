"""Class-per-folder datasets: layouts, deterministic stratified splits and split files.

Layouts accepted by ``load_splits``:

* ``DATA/train/<class>/*`` with ``DATA/val`` (or ``valid``/``validation``) and an optional
  ``DATA/test``; a missing val (or a requested test) split is carved off train, stratified, seeded.
* ``DATA/<class>/*``: one folder of class folders, split into train/val(/test).
* ``cifar10``: the built-in CIFAR-10 (downloaded once into the cache).

Files are only read, never written; ``class_folders`` reads the class folders (hidden entries
skipped, folder links followed once and never back into the data folder).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.class_folders import (
    check_data_folder,
    list_class_images,
    list_images,
    visible_entries,
    warn_written,
)
from headstart.data.walk import Fence, make_fence
from headstart.data.written import SPLITS_FORMAT, not_data_reason
from headstart.errors import DataError

__all__ = [
    "DataSplits",
    "Sample",
    "list_images",
    "load_eval_samples",
    "load_splits",
    "read_splits",
    "splits_json",
]

log = logging.getLogger(__name__)

VAL_NAMES = ("val", "valid", "validation")


@dataclass(frozen=True)
class Sample:
    """One image file and the index of its class."""

    path: str
    label: int


@dataclass(frozen=True)
class DataSplits:
    """The classes and the train/val/test samples of a dataset, and how the splits were made.

    Attributes:
        classes: Class names; a sample's label indexes this tuple.
        train: Training samples.
        val: Validation samples.
        test: Test samples (may be empty).
        origin: How the splits were made, e.g. ``{"layout": "folders", "dirs": {...}}``.
    """

    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...]
    origin: dict[str, Any]

    def image_roots(self) -> list[str]:
        """The folders whose images these splits hold, where nothing may be written: the data
        folder of a flat layout, the split folders of a ``train/`` + ``val/`` layout (a run folder
        may sit beside them), none for the built-in datasets."""
        if self.origin.get("layout") == "split" and self.origin.get("root"):
            return [str(self.origin["root"])]
        return [str(folder) for folder in (self.origin.get("dirs") or {}).values()]

    def counts(self) -> dict[str, list[int]]:
        """Return the number of samples per class for each split."""
        result = {}
        for name in ("train", "val", "test"):
            per_class = [0] * len(self.classes)
            for sample in getattr(self, name):
                per_class[sample.label] += 1
            result[name] = per_class
        return result


def _require_two_classes(root: Path, classes: Iterable[str]) -> None:
    names = list(classes)
    if len(names) < 2:
        raise DataError(
            f"{root} has {len(names)} class folder(s) ({', '.join(names) or 'none'}); a classifier "
            "needs at least 2 classes, one folder per class."
        )


# ----------------------------------------------------------------------------- splitting


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Return (n_val, n_test) for a class of ``n`` images, keeping at least one to train on."""
    n_val = round(n * val_fraction) if val_fraction > 0 else 0
    n_test = round(n * test_fraction) if test_fraction > 0 else 0
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    if test_fraction > 0 and n >= 3:
        n_test = max(1, n_test)
    n_test = min(n_test, max(0, n - 1 - n_val))
    n_val = min(n_val, max(0, n - 1 - n_test))
    return n_val, n_test


def _class_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per class, so adding a class does not reshuffle the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def stratified_split(
    per_class: dict[str, list[Path]],
    classes: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[tuple[Sample, ...], tuple[Sample, ...], tuple[Sample, ...]]:
    """Split each class's images into train/val/test, deterministically for a seed.

    Paths are sorted, then permuted by a generator seeded with ``seed`` and the class name. Every
    class with at least 2 images gets at least 1 validation image.
    """
    _check_fractions(val_fraction, test_fraction)
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []
    for name, paths in per_class.items():
        label = classes.index(name)
        ordered = sorted(str(p) for p in paths)
        order = _class_rng(seed, name).permutation(len(ordered))
        n_val, n_test = _split_counts(len(ordered), val_fraction, test_fraction)
        shuffled = [Sample(ordered[i], label) for i in order]
        test += shuffled[:n_test]
        val += shuffled[n_test : n_test + n_val]
        train += shuffled[n_test + n_val :]
        if val_fraction > 0 and n_val == 0:
            log.warning(
                "class %r has only %d image(s): none is left for validation", name, len(ordered)
            )
    key = _sample_key
    return tuple(sorted(train, key=key)), tuple(sorted(val, key=key)), tuple(sorted(test, key=key))


def _sample_key(sample: Sample) -> tuple[int, str]:
    return sample.label, sample.path


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0:
        raise DataError(
            f"split fractions must be in [0, 1): val {val_fraction}, test {test_fraction}."
        )
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val fraction {val_fraction} plus test fraction {test_fraction} leaves nothing to "
            "train on; lower them."
        )


def _samples(per_class: dict[str, list[Path]], classes: Sequence[str]) -> tuple[Sample, ...]:
    index = {name: i for i, name in enumerate(classes)}
    return tuple(
        sorted(
            (Sample(str(p), index[name]) for name, paths in per_class.items() for p in paths),
            key=_sample_key,
        )
    )


# ----------------------------------------------------------------------------- layouts


def _find_split_dirs(root: Path) -> dict[str, Path]:
    """Return the ``train``/``val``/``test`` folders present in ``root`` (no class folders).

    A folder headstart wrote is no split folder, whatever its name (a run written to
    ``DATA/train`` by ``--out``).
    """
    names = {p.name: p for p in visible_entries(root) if p.is_dir() and not not_data_reason(p)}
    found = {"train": names.get("train"), "test": names.get("test")}
    vals = [names[n] for n in VAL_NAMES if n in names]
    if len(vals) > 1:
        raise DataError(
            f"{root} has more than one validation folder ({', '.join(v.name for v in vals)}); "
            "keep only one."
        )
    found["val"] = vals[0] if vals else None
    return {k: v for k, v in found.items() if v is not None}


def load_splits(
    data: str | Path,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> DataSplits:
    """Find the classes and train/val/test samples of a dataset.

    Args:
        data: A folder (``DATA/<class>/*`` or ``DATA/train|val|test/<class>/*``) or ``"cifar10"``.
        val_fraction: Fraction of each class held out for validation when there is no val folder.
        test_fraction: Fraction of each class held out for testing when there is no test folder.
        seed: Seed of the stratified split.
        cache_dir: Cache root for built-in datasets (default ``$HEADSTART_CACHE`` or
            ``~/.cache/headstart``).

    Raises:
        DataError: The folder cannot be used; the message says why and how to fix it.
    """
    root = Path(data).expanduser()
    if str(data) == "cifar10":
        if not root.exists():
            return _load_cifar10(
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
                cache_dir=cache_dir,
            )
        log.info("using the folder %s, not the built-in cifar10 dataset", root.absolute())
    root = root.absolute()
    check_data_folder(root)
    dirs = _find_split_dirs(root)
    if "train" in dirs:
        return _load_split_layout(root, dirs, val_fraction, test_fraction, seed)
    if dirs.get("val") is not None or dirs.get("test") is not None:
        present = ", ".join(sorted(d.name for d in dirs.values()))
        raise DataError(
            f"{root} has {present} but no train folder; add {root / 'train'} with one folder per "
            "class, or rename the folders."
        )
    return _load_flat_layout(root, val_fraction, test_fraction, seed)


def _load_flat_layout(
    root: Path, val_fraction: float, test_fraction: float, seed: int
) -> DataSplits:
    per_class = list_class_images(root)
    _require_two_classes(root, per_class)
    classes = tuple(sorted(per_class))
    train, val, test = stratified_split(
        per_class, classes, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    origin = {
        "layout": "split",
        "root": str(root),
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    log.info(
        "split %s into %d train / %d val / %d test images", root, len(train), len(val), len(test)
    )
    return DataSplits(classes, train, val, test, origin)


def _load_split_layout(
    root: Path, dirs: dict[str, Path], val_fraction: float, test_fraction: float, seed: int
) -> DataSplits:
    others = []
    for entry in (p for p in visible_entries(root) if p not in dirs.values()):
        written = not_data_reason(entry) if entry.is_dir() else None
        if written:
            warn_written(entry, written)
        else:
            others.append(entry.name)
    if others:
        log.warning("ignoring %s in %s (only train, val, test are read)", ", ".join(others), root)
    fence = make_fence(root, dirs.values())
    train_per_class = list_class_images(dirs["train"], fence)
    _require_two_classes(dirs["train"], train_per_class)
    classes = tuple(sorted(train_per_class))
    held = {
        name: _scan_subset(dirs[name], classes, fence) for name in ("val", "test") if name in dirs
    }
    carve_val = 0.0 if "val" in dirs else val_fraction
    carve_test = 0.0 if "test" in dirs else test_fraction
    if "test" in dirs and test_fraction > 0:
        log.info(
            "test fraction %s ignored: %s is used as the test split", test_fraction, dirs["test"]
        )
    train, val, test = stratified_split(
        train_per_class, classes, val_fraction=carve_val, test_fraction=carve_test, seed=seed
    )
    origin: dict[str, Any] = {
        "layout": "folders",
        "root": str(root),
        "dirs": {name: str(path) for name, path in sorted(dirs.items())},
    }
    if carve_val or carve_test:
        carved = {"val_fraction": carve_val, "test_fraction": carve_test, "seed": seed}
        origin["carved_from_train"] = carved
        log.warning(
            "no %s folder in %s: held out %s of each class of train, seed %d",
            " or ".join(n for n, f in (("val", carve_val), ("test", carve_test)) if f),
            root,
            " / ".join(str(f) for f in (carve_val, carve_test) if f),
            seed,
        )
    val = held.get("val", val)
    test = held.get("test", test)
    return DataSplits(classes, train, val, test, origin)


def _scan_subset(
    folder: Path, classes: Sequence[str], fence: Fence | None = None
) -> tuple[Sample, ...]:
    """Scan a val/test folder whose class folders must all be training classes."""
    per_class = list_class_images(folder, fence)
    unknown = sorted(set(per_class) - set(classes))
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(unknown)} in {folder} are not in train (classes: "
            f"{', '.join(classes)}); rename them or add them to train."
        )
    missing = [c for c in classes if c not in per_class]
    if missing:
        log.warning("%s has no images of class(es) %s", folder, ", ".join(missing))
    return _samples(per_class, classes)


def _load_cifar10(
    *, val_fraction: float, test_fraction: float, seed: int, cache_dir: str | Path | None
) -> DataSplits:
    from headstart.data.cifar import prepare_cifar10

    folder = prepare_cifar10(cache_dir)
    train_per_class = list_class_images(folder / "train")
    classes = tuple(sorted(train_per_class))
    train, val, _ = stratified_split(
        train_per_class, classes, val_fraction=val_fraction, test_fraction=0.0, seed=seed
    )
    if test_fraction > 0:
        log.info(
            "test fraction %s ignored: CIFAR-10's own test set is the test split", test_fraction
        )
    test = _scan_subset(folder / "test", classes)
    origin = {"layout": "cifar10", "root": str(folder), "val_fraction": val_fraction, "seed": seed}
    return DataSplits(classes, train, val, test, origin)


# ----------------------------------------------------------------------------- split files


def splits_json(splits: DataSplits) -> str:
    """``splits`` as the JSON that :func:`read_splits` reads: classes, origin, samples."""
    doc = {
        "format": SPLITS_FORMAT,
        "version": 1,
        "classes": list(splits.classes),
        "origin": splits.origin,
        **{
            name: [[s.path, s.label] for s in getattr(splits, name)]
            for name in ("train", "val", "test")
        },
    }
    return json.dumps(doc, indent=1)


def read_splits(path: str | Path) -> DataSplits:
    """Read a file holding :func:`splits_json`.

    Raises:
        DataError: The file is missing or is not a headstart splits file.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != SPLITS_FORMAT:
            raise ValueError("not a headstart splits file")
        classes = tuple(str(c) for c in doc["classes"])
        parts = {
            name: tuple(Sample(str(p), int(label)) for p, label in doc[name])
            for name in ("train", "val", "test")
        }
        origin = dict(doc["origin"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"cannot read splits file {path}: {exc}; it is not a headstart splits file."
        ) from None
    for samples in parts.values():
        if any(not 0 <= s.label < len(classes) for s in samples):
            raise DataError(f"splits file {path} has a label outside its {len(classes)} classes.")
    return DataSplits(classes, parts["train"], parts["val"], parts["test"], origin)


# ----------------------------------------------------------------------------- evaluate
# (the inputs of predict are listed by ``class_folders.list_images``, re-exported here)


def load_eval_samples(
    data: str | Path, classes: Sequence[str], *, cache_dir: str | Path | None = None
) -> list[Sample]:
    """Find labelled images to evaluate a model trained on ``classes``.

    Uses ``DATA/test`` if present, else ``DATA/val`` (or ``valid``/``validation``), else ``DATA``
    itself as class folders; ``"cifar10"`` means CIFAR-10's test set. Class folders are matched
    to ``classes`` by name.

    Raises:
        DataError: A class folder is not one of the model's classes, or the folder cannot be used.
    """
    root = Path(data).expanduser()
    fence = None
    if str(data) == "cifar10" and not root.exists():
        from headstart.data.cifar import prepare_cifar10

        folder = prepare_cifar10(cache_dir) / "test"
    else:
        root = root.absolute()
        check_data_folder(root)
        dirs = _find_split_dirs(root)
        folder = dirs.get("test") or dirs.get("val") or root
        splits = list(dict.fromkeys([folder, *dirs.values()])) if folder != root else [root]
        fence = make_fence(root, splits)
    log.info("evaluating on images in %s", folder)
    per_class = list_class_images(folder, fence)
    unknown = sorted(set(per_class) - set(classes))
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(unknown)} in {folder} are not classes of the model; "
            f"the model knows: {', '.join(classes)}. Rename or remove those folders."
        )
    return list(_samples(per_class, classes))
