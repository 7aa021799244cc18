"""The audit cache: each file's inspection, kept until the file or the audit settings change.

Results are kept under ``cache_dir()/audit``, one JSON file per data root and settings, keyed by
each file's absolute path and signature (size, modification time, change time and inode), so a
file that has not changed since the last audit is not read again. A file whose timestamps lie
within ``RACY_NS`` of the moment the cache was written could have changed again within the same
timestamp tick (filesystems keep times as coarse as 2 s), so its content hash is compared too, as
git does for "racily clean" files. The cache file is replaced with the one atomic write; a
missing, stale or corrupt cache only means that files are read again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from PIL import __version__ as _PILLOW_VERSION

from headstart.data.audit.inspect import FileInspection
from headstart.data.audit.read_pass import read_files
from headstart.data.audit.report import SAMPLE_KINDS, BadFile
from headstart.data.image_store import StoreWriter
from headstart.data.written import mark_cache_root
from headstart.files import atomic_write, cache_dir

__all__ = ["inspect_files_cached"]

log = logging.getLogger(__name__)

_CACHE_FORMAT = "headstart-audit-cache"
_CACHE_VERSION = 3
"""Bump when ``inspect_file`` can give another result for the same bytes and settings (2: images
over ``images.MAX_ASPECT_RATIO`` are ``too_thin``), or the file's layout changes (3: when it was
written)."""

RACY_NS = 2_000_000_000
"""The coarsest timestamp granularity of common filesystems (FAT: 2 s)."""

Signature = tuple[int, int, int, int]
"""A file's size, mtime_ns, ctime_ns and inode: a change in any of them means "inspect again"."""


def _stat_signature(path: str) -> Signature | None:
    """The ``Signature`` of the file at ``path`` (followed if a link), or None if it is not there.

    Besides size and mtime (as in ``cache_store.file_signature``), the change time and inode catch a
    chmod, a write that restores the mtime and a link pointed at another file.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def inspect_files_cached(
    paths: Sequence[str],
    *,
    root: str,
    max_pixels: int,
    min_size: int,
    workers: int | None = None,
    store: StoreWriter | None = None,
) -> list[FileInspection]:
    """``read_pass.read_files``, reusing the results of files unchanged since the last audit of
    ``root``; with ``store`` (whose rows are ``paths``), every file is read into it as well.

    The results of the files that could be read are then saved for the next audit. A missing or
    corrupt cache file only means that every file is inspected again.
    """
    settings = _cache_settings(root, max_pixels, min_size)
    cache_file = _cache_file(settings)
    old, written_ns = _read_cache(cache_file, settings)
    signatures = {p: _stat_signature(p) for p in paths}  # taken before reading: a race re-inspects
    found: dict[str, FileInspection] = {}
    for path, signature in signatures.items():
        hit = _cached_inspection(path, old.get(_absolute(path)), signature, written_ns)
        if hit is not None:
            found[path] = hit
    misses = [p for p in paths if p not in found]
    read = read_files(
        paths, max_pixels=max_pixels, min_size=min_size, audit=[p not in found for p in paths],
        store=store, workers=workers, task="audit" if store is None else "reading images",
    )  # fmt: skip
    found.update((p, i) for p, i in zip(paths, read, strict=True) if i is not None)
    log.info("audit cache: %d of %d files unchanged", len(paths) - len(misses), len(paths))
    entries = {
        _absolute(path): _cache_entry(signature, found[path])
        for path, signature in signatures.items()
        if signature is not None and found[path].digest is not None
    }
    if entries != old:
        _write_cache(cache_file, settings, entries)
    return [found[p] for p in paths]


def _absolute(path: str) -> str:
    """``os.path.abspath(path)``, as the very string ``path`` when that is it already (one string
    per file, not two, in a 300,000-file audit)."""
    absolute = os.path.abspath(path)
    return path if absolute == path else absolute


def _cache_settings(root: str, max_pixels: int, min_size: int) -> dict[str, Any]:
    real = os.path.realpath(root) if root else root  # a linked data folder shares its cache
    return {"root": real, "max_pixels": max_pixels, "min_size": min_size, "pillow": _PILLOW_VERSION}


def _cache_file(settings: dict[str, Any]) -> Path:
    """One cache file per data root and settings, so a check and a train run do not collide."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "audit" / f"{key}.json"


def _read_cache(cache_file: Path, settings: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The entries of ``cache_file`` (absolute path -> entry; none if missing, stale or corrupt)
    and when it was written (``time.time_ns()``)."""
    try:
        doc = json.loads(cache_file.read_text())
        current = (doc["format"], doc["version"], doc["settings"]) == (
            _CACHE_FORMAT,
            _CACHE_VERSION,
            settings,
        )
        entries = doc["files"] if current else {}
        written = int(doc["written_ns"]) if current else 0
        if not isinstance(entries, dict):
            raise TypeError("'files' is not a mapping")
    except FileNotFoundError:
        return {}, 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the audit cache %s (%s); auditing every file again", cache_file, exc)
        return {}, 0
    return entries, written


def _cached_inspection(
    path: str, entry: Any, signature: Signature | None, written_ns: int
) -> FileInspection | None:
    """The ``FileInspection`` stored in ``entry`` if it is well formed and ``signature`` matches
    (and, for a file changed within ``RACY_NS`` of ``written_ns``, its content hash)."""
    if signature is None or not isinstance(entry, list) or len(entry) != 7:
        return None
    if tuple(entry[:4]) != signature or not isinstance(entry[4], str):
        return None
    digest, kind, reason = entry[4:]
    if max(signature[1], signature[2]) >= written_ns - RACY_NS and _content_hash(path) != digest:
        return None
    if kind is None:
        return FileInspection(path, digest, None)
    if kind not in SAMPLE_KINDS or not isinstance(reason, str):
        return None
    return FileInspection(path, digest, BadFile(path, reason, kind))


def _content_hash(path: str) -> str | None:
    """The SHA-256 of the file's bytes, as ``inspect_file`` records it (None if unreadable)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _cache_entry(signature: Signature, inspection: FileInspection) -> list[Any]:
    bad = inspection.bad
    kind, reason = (None, None) if bad is None else (bad.kind, bad.reason)
    return [*signature, inspection.digest, kind, reason]


def _write_cache(cache_file: Path, settings: dict[str, Any], entries: dict[str, Any]) -> None:
    """Replace ``cache_file`` atomically; a failure is logged, as the cache only saves time."""
    doc: dict[str, Any] = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION}
    doc.update(settings=settings, written_ns=time.time_ns())
    doc["files"] = entries
    def write(handle: IO[bytes]) -> None:  # streamed: no second copy of the cache in memory
        text = io.TextIOWrapper(handle, encoding="utf-8", write_through=False)
        json.dump(doc, text, separators=(",", ":"))
        text.flush()
        text.detach()

    try:
        atomic_write(cache_file, write)
        mark_cache_root(cache_file)
    except OSError as exc:
        log.warning(
            "cannot write the audit cache %s (%s); the next audit reads every file again; "
            "check that %s is writable (or set HEADSTART_CACHE).",
            cache_file,
            exc,
            cache_file.parent,
        )
