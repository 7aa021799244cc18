"""The data audit: fully decode every image and list what cannot be used, and why.

The audit only reads: it lists folders, stats and reads files, and never writes, moves or deletes a
user's file. It finds, per file with a reason: zero-byte files, non-images with image extensions,
truncated or corrupt images, unsupported formats, decompression bombs (rejected from the header),
images too small to use or too thin, unreadable files, broken symlinks and symlink loops
(``inspect``, the ``tree`` walk). It also finds exact duplicates and train/val/test leaks (by
SHA-256 of the content), empty class folders, images lying outside class folders, folders
headstart wrote inside the data (skipped, with a warning), and class imbalance. Each file's result
is kept in the audit ``cache``, so an unchanged file is not read again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from headstart.data.audit.cache import inspect_files_cached
from headstart.data.audit.inspect import DEFAULT_MIN_SIZE
from headstart.data.audit.read_pass import read_files
from headstart.data.audit.report import SPLIT_NAMES, AuditReport, BadFile, Leak
from headstart.data.audit.tree import TreeAudit, audit_tree
from headstart.data.folders import DataSplits, Sample, load_splits
from headstart.data.image_store import DecodedImageCache, SquareSpec, StoreWriter, open_store
from headstart.data.images import DEFAULT_MAX_PIXELS
from headstart.data.walk import is_hidden
from headstart.errors import DataError
from headstart.files import cache_budget, cache_dir

__all__ = ["DEFAULT_IMBALANCE_RATIO", "audit_folder", "audit_splits"]

log = logging.getLogger(__name__)

DEFAULT_IMBALANCE_RATIO = 10.0
"""A warning is given when the largest training class is this many times the smallest."""


def audit_splits(
    splits: DataSplits,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
    imbalance_ratio: float = DEFAULT_IMBALANCE_RATIO,
    workers: int | None = None,
    tree: TreeAudit | None = None,
    use_cache: bool = True,
    squares: SquareSpec | None = None,
    store_root: Path | None = None,
    budget_bytes: int | None = None,
) -> AuditReport:
    """Decode every sample of ``splits`` and report bad files, duplicates, leaks and imbalance.

    Args:
        splits: From ``load_splits``.
        max_pixels: Larger images are rejected from the header as possible decompression bombs.
        min_size: Images with a side shorter than this (pixels) are rejected.
        imbalance_ratio: Warn when the largest training class is this many times the smallest.
        workers: Decoding processes (default: the number of CPUs, at most 16).
        tree: An ``audit_tree`` of the data folder; walked here when omitted and the splits come
            from a folder.
        use_cache: Reuse the results of files unchanged since the last audit (see
            ``inspect_files_cached``); False reads every file and leaves the cache alone.
        squares: Also fill the decoded-image store with every file's square (from the same read
            of each file), unless a complete entry exists; ``report.decoded`` names the entry,
            None if it would not fit ``budget_bytes``.
        store_root: Folder of store entries (default ``cache_dir()/images``).
        budget_bytes: The cache budget (default ``files.cache_budget()``).
    """
    start = time.perf_counter()
    root = str(splits.origin.get("root", ""))
    if tree is None and splits.origin.get("layout") in ("split", "folders") and root:
        tree = audit_tree(root)
    tree = tree or TreeAudit()
    paths = sorted({s.path for name in SPLIT_NAMES for s in getattr(splits, name)})
    opened, writer = _store_for(paths, squares, store_root, budget_bytes, max_pixels)
    try:
        if use_cache:
            inspections = inspect_files_cached(
                paths, root=root, max_pixels=max_pixels, min_size=min_size, workers=workers,
                store=writer,
            )  # fmt: skip
        else:
            read = read_files(
                paths, max_pixels=max_pixels, min_size=min_size, audit=[True] * len(paths),
                store=writer, workers=workers,
            )  # fmt: skip
            inspections = [i for i in read if i is not None]
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        opened = writer.finish()
    report = AuditReport(
        root=root,
        splits=splits,
        bad=_merge_bad(tree.bad, [i.bad for i in inspections if i.bad is not None]),
        ignored=list(tree.ignored),
        written=list(tree.written),
        settings={
            "max_pixels": max_pixels,
            "min_size": min_size,
            "imbalance_ratio": imbalance_ratio,
        },
    )
    digests = {i.path: i.digest for i in inspections if i.digest is not None and i.bad is None}
    report.duplicates, report.leaks = _duplicates_and_leaks(splits, digests)
    report.warnings = _warnings(report, imbalance_ratio)
    report.seconds = time.perf_counter() - start
    report.decoded = None if opened is None else str(opened.folder)
    log.info(
        "audited %d images in %.2fs: %d bad", len(paths), report.seconds, report.num_bad_samples
    )
    return report


def _store_for(
    paths: list[str],
    squares: SquareSpec | None,
    root: Path | None,
    budget_bytes: int | None,
    max_pixels: int,
) -> tuple[DecodedImageCache | None, StoreWriter | None]:
    """The complete store entry of ``paths``, or a writer for a new one (neither when no squares
    are asked for, or they would not fit the budget)."""
    if squares is None:
        return None, None
    squares = replace(squares, max_pixels=max_pixels)
    root = root if root is not None else cache_dir() / "images"
    opened = open_store(root, paths, squares)
    if opened is not None:
        return opened, None
    budget = cache_budget() if budget_bytes is None else budget_bytes
    return None, StoreWriter.create(root, paths, squares, budget)


def _merge_bad(*groups: Iterable[BadFile]) -> list[BadFile]:
    """All problems, one per path (the first wins), sorted by path."""
    seen: dict[str, BadFile] = {}
    for group in groups:
        for bad in group:
            seen.setdefault(bad.path, bad)
    return sorted(seen.values(), key=lambda b: b.path)


def _duplicates_and_leaks(
    splits: DataSplits, digests: dict[str, str]
) -> tuple[list[list[str]], list[Leak]]:
    by_digest: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name in SPLIT_NAMES:
        for sample in getattr(splits, name):
            if sample.path in digests:
                by_digest[digests[sample.path]].append((name, sample.path))
    duplicates, leaks = [], []
    for group in by_digest.values():
        if len(group) < 2:
            continue
        duplicates.append(sorted(path for _, path in group))
        train = sorted(path for split, path in group if split == "train")
        for split, path in sorted(group):
            if split != "train" and train:
                leaks.append(Leak(train=train[0], other=path, split=split))
    return sorted(duplicates), leaks


def _warnings(report: AuditReport, imbalance_ratio: float) -> list[str]:
    warnings = []
    train = report.counts["train"]
    sizes = [n for n in train.values() if n > 0]
    if sizes and max(sizes) > imbalance_ratio * min(sizes):
        big = max(train, key=lambda c: train[c])
        small = min((c for c in train if train[c] > 0), key=lambda c: train[c])
        warnings.append(
            f"classes are imbalanced: {big} has {train[big]} training images, {small} has "
            f"{train[small]} (over {imbalance_ratio:g}x); add images of the small classes, or "
            "train with --class-weights balanced or --sampler balanced, and pick the best epoch "
            "by --monitor val_f1."
        )
    for split in ("val", "test"):
        counts = report.counts[split]
        if sum(counts.values()) and any(n == 0 for n in counts.values()):
            missing = [c for c, n in counts.items() if n == 0]
            warnings.append(f"{split} has no usable images of class(es) {', '.join(missing)}.")
    if report.leaks:
        warnings.append(
            f"{len(report.leaks)} val/test image(s) are identical to training images; their "
            "scores will be optimistic. Remove them from one of the splits."
        )
    labels = {s.path: s.label for n in SPLIT_NAMES for s in getattr(report.splits, n)}
    for group in report.duplicates:
        names = sorted({report.splits.classes[labels[p]] for p in group})
        if len(names) > 1:
            warnings.append(f"the same image is in classes {', '.join(names)}: {', '.join(group)}")
    return warnings + _ignored_warnings(report.ignored) + _written_warnings(report.written)


def _ignored_warnings(ignored: list[str]) -> list[str]:
    """One line each for the ignored files without an image extension and the hidden ones."""
    hidden = sum(map(is_hidden, ignored))
    warnings = []
    if len(ignored) > hidden:
        warnings.append(f"{len(ignored) - hidden} file(s) without an image extension were ignored.")
    if hidden:
        warnings.append(
            f"{hidden} hidden file(s) with image extensions (such as macOS ._ files) were ignored."
        )
    return warnings


def _written_warnings(written: list[str]) -> list[str]:
    """One line naming the folders headstart wrote that were found in the data and skipped."""
    if not written:
        return []
    named = ", ".join(written[:3]) + (f" and {len(written) - 3} more" if len(written) > 3 else "")
    return [
        f"{len(written)} folder(s) that headstart wrote (runs, reports, caches) were skipped, not "
        f"read as images: {named}; keep headstart's outputs outside the data folder."
    ]


def audit_folder(
    data: str | Path,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
    imbalance_ratio: float = DEFAULT_IMBALANCE_RATIO,
    workers: int | None = None,
    use_cache: bool = True,
) -> AuditReport:
    """Audit a data folder the way ``load_splits`` would split it (see ``audit_splits``).

    When ``load_splits`` rejects the folder (e.g. an empty class folder), every image found is
    still audited and ``report.fatal`` holds the reason.

    Raises:
        DataError: ``data`` is not a folder.
    """
    root = Path(data).expanduser().absolute()
    tree = audit_tree(root)
    fatal = None
    try:
        splits = load_splits(
            root, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    except DataError as exc:
        fatal = str(exc)
        splits = _splits_from_tree(root, tree)
    report = audit_splits(
        splits,
        max_pixels=max_pixels,
        min_size=min_size,
        imbalance_ratio=imbalance_ratio,
        workers=workers,
        tree=tree,
        use_cache=use_cache,
    )
    report.fatal = fatal
    if fatal is None and report.num_samples == 0:
        report.fatal = f"no images found in {root}; add one folder of images per class."
    return report


def _splits_from_tree(root: Path, tree: TreeAudit) -> DataSplits:
    """Splits as the folders lie (no carving), for auditing a folder ``load_splits`` rejects."""
    classes = tuple(sorted({c for per_class in tree.images.values() for c in per_class}))
    parts: dict[str, tuple[Sample, ...]] = {}
    for split in SPLIT_NAMES:
        per_class = tree.images.get(split, {})
        parts[split] = tuple(
            Sample(path, classes.index(name))
            for name in sorted(per_class)
            for path in per_class[name]
        )
    return DataSplits(classes, parts["train"], parts["val"], parts["test"], {"root": str(root)})
