"""The data audit: fully decode every image and list what cannot be used, and why.

The audit only reads: it lists folders, stats and reads files, and never writes, moves or deletes a
user's file. It finds, per file with a reason: zero-byte files, non-images with image extensions,
truncated or corrupt images, unsupported formats, decompression bombs (rejected from the header),
images too small to use, unreadable files, broken symlinks and symlink loops. It also finds exact
duplicates and train/val/test leaks (by SHA-256 of the content), empty class folders, images lying
outside class folders, and class imbalance.

Files are decoded with ``decode_image`` (the one decoder) in a thread pool; Pillow releases the GIL
while decoding. Each file's result is cached under ``cache_dir()/audit`` with the file's size,
modification time, change time and inode and the audit settings, so a file that has not changed
since the last audit is not read again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import __version__ as _PILLOW_VERSION

from headstart.data.folders import VAL_NAMES, DataSplits, Sample, load_splits
from headstart.data.images import DEFAULT_MAX_PIXELS, decode_image, is_image_file
from headstart.data.walk import Skip, WalkProblem, list_visible, walk_images
from headstart.errors import DataError
from headstart.files import cache_dir

__all__ = [
    "BAD_KINDS",
    "AuditReport",
    "BadFile",
    "Leak",
    "audit_folder",
    "audit_splits",
    "inspect_file",
    "scan_tree",
]

log = logging.getLogger(__name__)

DEFAULT_MIN_SIZE = 8
"""Images with a side shorter than this many pixels are rejected as too small."""

DEFAULT_IMBALANCE_RATIO = 10.0
"""A warning is given when the largest training class is this many times the smallest."""

BAD_KINDS = {
    "empty_file": "zero-byte files",
    "not_image": "not images (text, HTML, random bytes) with an image extension",
    "unsupported": "image formats headstart does not decode",
    "truncated": "truncated images",
    "corrupt": "corrupt images",
    "too_large": "too many pixels (possible decompression bombs)",
    "too_small": "images too small to use",
    "unreadable": "unreadable files or folders (permissions)",
    "missing": "files gone since the folder was listed",
    "broken_symlink": "broken symlinks",
    "symlink_loop": "symlink loops (not followed)",
    "outside_class": "images outside class folders (ignored)",
    "empty_class": "empty class folders",
}
"""Every kind of problem a ``BadFile`` can have, with a heading for reports."""

SAMPLE_KINDS = frozenset(BAD_KINDS) - {"outside_class", "empty_class"}
"""Kinds that make a file unusable as a sample (they count in ``bad_fraction``)."""

_SPLIT_NAMES = ("train", "val", "test")
_DECODABLE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_UNSUPPORTED_MAGIC = (
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}


# ----------------------------------------------------------------------------- report types


@dataclass(frozen=True)
class BadFile:
    """A file (or folder) that is skipped, with the reason and one of ``BAD_KINDS``."""

    path: str
    reason: str
    kind: str


@dataclass(frozen=True)
class Leak:
    """The same image (by content) in the training split and in ``split`` (val or test)."""

    train: str
    other: str
    split: str


@dataclass
class AuditReport:
    """What the audit found; ``to_dict`` is what ``data_report.json`` holds.

    Attributes:
        root: The audited data folder.
        splits: The splits as loaded, bad files included (``clean_splits`` drops them).
        bad: Skipped files and folders, each with a reason and a kind.
        duplicates: Groups of files with identical content (two or more paths each).
        leaks: Images that are in train and also in val or test.
        ignored: Files without an image extension (skipped, as ``load_splits`` does).
        warnings: Readable warnings (imbalance, leaks, duplicates across classes, ...).
        fatal: Why the data cannot be trained on at all, or None.
        settings: The audit's settings (max_pixels, min_size, imbalance_ratio).
        seconds: Time the audit took.
    """

    root: str
    splits: DataSplits
    bad: list[BadFile] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fatal: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def num_samples(self) -> int:
        """Image files in the splits (good and bad)."""
        return sum(len(getattr(self.splits, name)) for name in _SPLIT_NAMES)

    @property
    def num_bad_samples(self) -> int:
        """Image files in the splits that cannot be used."""
        bad = {b.path for b in self.bad}
        return sum(s.path in bad for name in _SPLIT_NAMES for s in getattr(self.splits, name))

    @property
    def bad_fraction(self) -> float:
        """Fraction of the split samples that cannot be used (0 when there are none)."""
        return self.num_bad_samples / self.num_samples if self.num_samples else 0.0

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Usable images per split and class (``{"train": {"cat": 10, ...}, ...}``)."""
        clean = self.clean_splits()
        return {
            split: dict(zip(clean.classes, per_class, strict=True))
            for split, per_class in clean.counts().items()
        }

    def clean_splits(self) -> DataSplits:
        """The splits without the bad files."""
        bad = {b.path for b in self.bad}
        parts: dict[str, Any] = {
            name: tuple(s for s in getattr(self.splits, name) if s.path not in bad)
            for name in _SPLIT_NAMES
        }
        return replace(self.splits, **parts)

    def problems(self, max_bad_fraction: float = 1.0) -> list[str]:
        """Reasons the data cannot be trained on (empty if it can)."""
        if self.fatal:
            return [self.fatal]
        found = []
        if self.bad_fraction > max_bad_fraction:
            found.append(
                f"{self.num_bad_samples} of {self.num_samples} images "
                f"({self.bad_fraction:.1%}) cannot be used, over the limit of "
                f"{max_bad_fraction:.1%}; fix or remove them (see 'headstart check {self.root}') "
                "or raise --max-bad-fraction."
            )
        empty = [c for c, n in self.counts["train"].items() if n == 0]
        if empty:
            found.append(
                f"class(es) {', '.join(empty)} have no usable training images after skipping bad "
                f"files; fix them (see 'headstart check {self.root}') or remove the folder(s)."
            )
        return found

    def raise_if_unusable(self, max_bad_fraction: float = 1.0) -> None:
        """Raise the first of ``problems`` as a DataError.

        Raises:
            DataError: The data cannot be trained on; the message says how to fix it.
        """
        found = self.problems(max_bad_fraction)
        if found:
            raise DataError(found[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, bad files, duplicates, leaks, warnings."""
        return {
            "format": "headstart-data-report",
            "version": 1,
            "root": self.root,
            "classes": list(self.splits.classes),
            "counts": self.counts,
            "num_samples": self.num_samples,
            "num_bad_samples": self.num_bad_samples,
            "bad_fraction": self.bad_fraction,
            "bad": [{"path": b.path, "kind": b.kind, "reason": b.reason} for b in self.bad],
            "duplicates": self.duplicates,
            "leaks": [{"train": x.train, "other": x.other, "split": x.split} for x in self.leaks],
            "ignored": self.ignored,
            "warnings": self.warnings,
            "fatal": self.fatal,
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``to_dict`` as JSON to ``path`` (a file of the caller's, never a user's image)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


# ----------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class FileCheck:
    """The result of ``inspect_file``: the content hash (None if unreadable) and any problem."""

    path: str
    digest: str | None
    bad: BadFile | None


def inspect_file(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int = DEFAULT_MIN_SIZE
) -> FileCheck:
    """Read and fully decode one file (read-only) and say whether it is a usable image."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileCheck(name, None, _os_error(name, exc))
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return FileCheck(name, digest, BadFile(name, "zero-byte file; remove it.", "empty_file"))
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except DataError as exc:
        message = str(exc).removeprefix("cannot read image <bytes>: ")
        kind, reason = _classify(data, message)
        return FileCheck(name, digest, BadFile(name, reason, kind))
    width, height = image.size
    if min(width, height) < min_size:
        reason = (
            f"{width}x{height} pixels is smaller than {min_size} px on a side; remove it or "
            "lower --min-size."
        )
        return FileCheck(name, digest, BadFile(name, reason, "too_small"))
    return FileCheck(name, digest, None)


def _os_error(name: str, exc: OSError) -> BadFile:
    if isinstance(exc, PermissionError):
        return BadFile(name, "permission denied; make the file readable (chmod +r).", "unreadable")
    if exc.errno == errno.ELOOP:
        return BadFile(name, "symlink loop; fix or remove the link.", "symlink_loop")
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(name):
            target = os.readlink(name)
            return BadFile(name, f"broken symlink to {target}; fix the link.", "broken_symlink")
        return BadFile(name, "no such file (removed while auditing?).", "missing")
    return BadFile(name, f"cannot read: {exc.strerror or exc}.", "unreadable")


def _classify(data: bytes, message: str) -> tuple[str, str]:
    """Map a decode failure to a kind and a readable reason, sniffing the content's first bytes."""
    lowered = message.lower()
    if "decompression bomb" in lowered or "over the limit" in lowered:
        hint = "" if "max_pixels" in message else " Shrink the image or raise --max-pixels."
        return "too_large", message + hint
    if "has no pixels" in lowered:
        return "corrupt", message
    if "not a supported image format" not in lowered:
        truncated = any(w in lowered for w in ("truncated", "broken data stream", "end of file"))
        return ("truncated" if truncated else "corrupt"), message
    head = data[:512]
    for magic, fmt in _DECODABLE_MAGIC:
        if head.startswith(magic):
            return "corrupt", f"starts like a {fmt} but its header is corrupt; re-export it."
    unsupported = _unsupported_format(head)
    if unsupported:
        return "unsupported", (
            f"{unsupported} image, a format headstart does not decode; convert it to PNG or JPEG."
        )
    return "not_image", f"not an image: {_describe_content(head)}; remove it or rename it."


def _unsupported_format(head: bytes) -> str | None:
    for magic, fmt in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return fmt
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], f"ISO media ({head[8:12].decode('latin-1')})")
    if head.startswith(b"RIFF") and head[8:12] != b"WEBP":
        return "RIFF (not WebP)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def _describe_content(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")) or b"<html" in text:
        return "an HTML page (a web page saved under an image name)"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        decoded = ""
    if decoded and all(c.isprintable() or c.isspace() for c in decoded):
        return "a text file"
    return f"unknown content (starts with {head[:8].hex()})"


def inspect_files(
    paths: Sequence[str], *, max_pixels: int, min_size: int, workers: int | None = None
) -> list[FileCheck]:
    """``inspect_file`` on every path, in a thread pool of ``workers`` threads (default: CPUs)."""
    workers = workers or min(16, os.cpu_count() or 1)
    if workers <= 1 or len(paths) < 2:
        return [inspect_file(p, max_pixels=max_pixels, min_size=min_size) for p in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit") as pool:
        return list(
            pool.map(lambda p: inspect_file(p, max_pixels=max_pixels, min_size=min_size), paths)
        )


# ----------------------------------------------------------------------------- the audit cache

_CACHE_FORMAT = "headstart-audit-cache"
_CACHE_VERSION = 1
"""Bump when ``inspect_file`` can give another result for the same bytes and settings."""

Signature = tuple[int, int, int, int]
"""A file's size, mtime_ns, ctime_ns and inode: a change in any of them means "inspect again"."""


def _stat_signature(path: str) -> Signature | None:
    """The ``Signature`` of the file at ``path`` (followed if a link), or None if it is not there.

    Besides size and mtime (as in ``cache.file_signature``), the change time and inode catch a
    chmod, a write that restores the mtime and a link pointed at another file.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def inspect_files_cached(
    paths: Sequence[str], *, root: str, max_pixels: int, min_size: int, workers: int | None = None
) -> list[FileCheck]:
    """``inspect_files``, reusing the results of files unchanged since the last audit of ``root``.

    The results of the files that could be read are then saved for the next audit. A missing or
    corrupt cache file only means that every file is inspected again.
    """
    settings = _cache_settings(root, max_pixels, min_size)
    cache_file = _cache_file(settings)
    old = _read_cache(cache_file, settings)
    signatures = {p: _stat_signature(p) for p in paths}  # taken before reading: a race re-inspects
    found: dict[str, FileCheck] = {}
    for path, signature in signatures.items():
        hit = _cached_check(path, old.get(os.path.abspath(path)), signature)
        if hit is not None:
            found[path] = hit
    misses = [p for p in paths if p not in found]
    checks = inspect_files(misses, max_pixels=max_pixels, min_size=min_size, workers=workers)
    found.update(zip(misses, checks, strict=True))
    log.info("audit cache: %d of %d files unchanged", len(paths) - len(misses), len(paths))
    entries = {
        os.path.abspath(path): _cache_entry(signature, found[path])
        for path, signature in signatures.items()
        if signature is not None and found[path].digest is not None
    }
    if entries != old:
        _write_cache(cache_file, settings, entries)
    return [found[p] for p in paths]


def _cache_settings(root: str, max_pixels: int, min_size: int) -> dict[str, Any]:
    real = os.path.realpath(root) if root else root  # a linked data folder shares its cache
    return {"root": real, "max_pixels": max_pixels, "min_size": min_size, "pillow": _PILLOW_VERSION}


def _cache_file(settings: dict[str, Any]) -> Path:
    """One cache file per data root and settings, so a check and a train run do not collide."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "audit" / f"{key}.json"


def _read_cache(cache_file: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``cache_file`` (absolute path -> entry); none if missing, stale or corrupt."""
    try:
        doc = json.loads(cache_file.read_text())
        current = (doc["format"], doc["version"], doc["settings"]) == (
            _CACHE_FORMAT,
            _CACHE_VERSION,
            settings,
        )
        entries = doc["files"] if current else {}
        if not isinstance(entries, dict):
            raise TypeError("'files' is not a mapping")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the audit cache %s (%s); auditing every file again", cache_file, exc)
        return {}
    return entries


def _cached_check(path: str, entry: Any, signature: Signature | None) -> FileCheck | None:
    """The ``FileCheck`` stored in ``entry`` if it is well formed and ``signature`` matches."""
    if signature is None or not isinstance(entry, list) or len(entry) != 7:
        return None
    if tuple(entry[:4]) != signature or not isinstance(entry[4], str):
        return None
    digest, kind, reason = entry[4:]
    if kind is None:
        return FileCheck(path, digest, None)
    if kind not in SAMPLE_KINDS or not isinstance(reason, str):
        return None
    return FileCheck(path, digest, BadFile(path, reason, kind))


def _cache_entry(signature: Signature, check: FileCheck) -> list[Any]:
    bad = check.bad
    kind, reason = (None, None) if bad is None else (bad.kind, bad.reason)
    return [*signature, check.digest, kind, reason]


def _write_cache(cache_file: Path, settings: dict[str, Any], entries: dict[str, Any]) -> None:
    """Replace ``cache_file`` atomically; a failure is logged, as the cache only saves time."""
    doc = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "settings": settings}
    doc["files"] = entries
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache_file.name}.", dir=cache_file.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, cache_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning(
            "cannot write the audit cache %s (%s); the next audit reads every file again; "
            "check that %s is writable (or set HEADSTART_CACHE).",
            cache_file,
            exc,
            cache_file.parent,
        )


# ----------------------------------------------------------------------------- the folder tree


@dataclass
class TreeScan:
    """What a read-only walk of a data folder found.

    Attributes:
        images: ``{split: {class: [image paths]}}``; a flat layout has only ``train``.
        bad: Broken symlinks, loops, unreadable folders, images outside class folders, empty
            class folders.
        ignored: Files without an image extension.
    """

    images: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    bad: list[BadFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def scan_tree(root: str | Path) -> TreeScan:
    """Walk a data folder (``DATA/<class>/`` or ``DATA/train|val|test/<class>/``), read-only.

    Hidden entries are skipped, as ``load_splits`` does. Folder symlinks are followed once per
    class folder, so a loop is reported and the walk ends.

    Raises:
        DataError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; check the path.")
    scan = TreeScan()
    entries = _list(root, scan)
    dirs = {p.name: p for p in entries if p.is_dir()}
    split_dirs = {"train": dirs.get("train"), "test": dirs.get("test")}
    split_dirs["val"] = next((dirs[n] for n in VAL_NAMES if n in dirs), None)
    if split_dirs["train"] is None:
        _scan_class_root(root, "train", scan)
        return scan
    used = {p for p in split_dirs.values() if p is not None}
    for other in (p for p in entries if p not in used):
        _mark_outside(other, scan)
    for split, folder in split_dirs.items():
        if folder is not None:
            _scan_class_root(folder, split, scan)
    return scan


def _list(folder: Path, scan: TreeScan) -> list[Path]:
    try:
        return list_visible(folder)
    except OSError as exc:
        scan.bad.append(_unlistable(folder, exc))
    return []


def _unlistable(folder: Path, exc: OSError | None) -> BadFile:
    if isinstance(exc, PermissionError):
        return BadFile(str(folder), "permission denied listing folder.", "unreadable")
    reason = (exc.strerror or exc) if exc is not None else "unknown error"
    return BadFile(str(folder), f"cannot list: {reason}.", "unreadable")


def _mark_outside(path: Path, scan: TreeScan) -> None:
    """Report image files at or under ``path``, which lies outside the class folders."""
    found: list[Path] = []
    if path.is_dir():
        found = _walk(path, scan, record=False)
    elif path.is_file() and is_image_file(path):
        found = [path]
    for image in found:
        scan.bad.append(
            BadFile(
                str(image),
                "image outside the class folders, ignored; move it into a class folder.",
                "outside_class",
            )
        )


def _scan_class_root(folder: Path, split: str, scan: TreeScan) -> None:
    per_class = scan.images.setdefault(split, {})
    for entry in _list(folder, scan):
        if entry.is_dir():
            images = _walk(entry, scan, record=True)
            per_class[entry.name] = [str(p) for p in images]
            if not images:
                reason = "class folder holds no usable images; add images or remove the folder."
                scan.bad.append(BadFile(str(entry), reason, "empty_class"))
        elif entry.is_symlink() or entry.is_file():
            if entry.is_file() and not is_image_file(entry):
                scan.ignored.append(str(entry))
            elif entry.is_file():
                _mark_outside(entry, scan)
            else:
                scan.bad.append(_link_problem(entry))


def _walk(folder: Path, scan: TreeScan, *, record: bool) -> list[Path]:
    """Image files under ``folder`` (sorted); with ``record``, log links, loops, other files.

    Unlistable folders are always recorded.
    """

    def on_problem(problem: WalkProblem) -> None:
        path = problem.path
        if problem.kind is Skip.UNLISTABLE:
            scan.bad.append(_unlistable(path, problem.error))
        elif not record:
            return
        elif problem.kind is Skip.REVISIT:
            reason = (
                f"folder link to {os.path.realpath(path)}, which was already scanned; not followed."
            )
            scan.bad.append(BadFile(str(path), reason, "symlink_loop"))
        elif problem.kind is Skip.NOT_IMAGE:
            scan.ignored.append(str(path))
        elif path.is_symlink():  # Skip.NOT_FILE: FIFOs and sockets are passed over
            scan.bad.append(_link_problem(path))

    return walk_images(folder, on_problem=on_problem)


def _link_problem(link: Path) -> BadFile:
    try:
        os.stat(link)
    except OSError as exc:
        return _os_error(str(link), exc)
    return BadFile(str(link), "link to something that is not a file or folder.", "broken_symlink")


# ----------------------------------------------------------------------------- auditing


def audit_splits(
    splits: DataSplits,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
    imbalance_ratio: float = DEFAULT_IMBALANCE_RATIO,
    workers: int | None = None,
    tree: TreeScan | None = None,
    use_cache: bool = True,
) -> AuditReport:
    """Decode every sample of ``splits`` and report bad files, duplicates, leaks and imbalance.

    Args:
        splits: From ``load_splits``.
        max_pixels: Larger images are rejected from the header as possible decompression bombs.
        min_size: Images with a side shorter than this (pixels) are rejected.
        imbalance_ratio: Warn when the largest training class is this many times the smallest.
        workers: Decoding threads (default: the number of CPUs, at most 16).
        tree: A ``scan_tree`` of the data folder; scanned here when omitted and the splits come
            from a folder.
        use_cache: Reuse the results of files unchanged since the last audit (see
            ``inspect_files_cached``); False reads every file and leaves the cache alone.
    """
    start = time.perf_counter()
    root = str(splits.origin.get("root", ""))
    if tree is None and splits.origin.get("layout") in ("split", "folders") and root:
        tree = scan_tree(root)
    tree = tree or TreeScan()
    paths = sorted({s.path for name in _SPLIT_NAMES for s in getattr(splits, name)})
    if use_cache:
        checks = inspect_files_cached(
            paths, root=root, max_pixels=max_pixels, min_size=min_size, workers=workers
        )
    else:
        checks = inspect_files(paths, max_pixels=max_pixels, min_size=min_size, workers=workers)
    report = AuditReport(
        root=root,
        splits=splits,
        bad=_merge_bad(tree.bad, [c.bad for c in checks if c.bad is not None]),
        ignored=list(tree.ignored),
        settings={
            "max_pixels": max_pixels,
            "min_size": min_size,
            "imbalance_ratio": imbalance_ratio,
        },
    )
    digests = {c.path: c.digest for c in checks if c.digest is not None and c.bad is None}
    report.duplicates, report.leaks = _duplicates_and_leaks(splits, digests)
    report.warnings = _warnings(report, imbalance_ratio)
    report.seconds = time.perf_counter() - start
    log.info(
        "audited %d images in %.2fs: %d bad", len(paths), report.seconds, report.num_bad_samples
    )
    return report


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
    for name in _SPLIT_NAMES:
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
            f"{train[small]} (over {imbalance_ratio:g}x); consider more images of the small "
            "classes or class weights."
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
    labels = {s.path: s.label for n in _SPLIT_NAMES for s in getattr(report.splits, n)}
    for group in report.duplicates:
        names = sorted({report.splits.classes[labels[p]] for p in group})
        if len(names) > 1:
            warnings.append(f"the same image is in classes {', '.join(names)}: {', '.join(group)}")
    if report.ignored:
        warnings.append(f"{len(report.ignored)} file(s) without an image extension were ignored.")
    return warnings


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
    tree = scan_tree(root)
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


def _splits_from_tree(root: Path, tree: TreeScan) -> DataSplits:
    """Splits as the folders lie (no carving), for auditing a folder ``load_splits`` rejects."""
    classes = tuple(sorted({c for per_class in tree.images.values() for c in per_class}))
    parts: dict[str, tuple[Sample, ...]] = {}
    for split in _SPLIT_NAMES:
        per_class = tree.images.get(split, {})
        parts[split] = tuple(
            Sample(path, classes.index(name))
            for name in sorted(per_class)
            for path in per_class[name]
        )
    return DataSplits(classes, parts["train"], parts["val"], parts["test"], {"root": str(root)})
