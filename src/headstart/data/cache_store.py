"""Cache entries on disk: a folder per key, complete once its ``meta.json`` is written, evicted
least recently used first beyond a size budget. An entry is written in a temporary folder of its own
(``new_entry``) and renamed into place once complete (``publish_entry``), so two runs filling the
same entry at once never mix their files, and a reader only ever sees whole entries. The
decoded-image cache and the feature cache are both kept this way. The cache folder
(``files.cache_dir()``) is marked as headstart's (``written.mark_cache_root``), so that a data walk
never reads it as images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from headstart.data.folders import Sample
from headstart.data.written import mark_cache_root
from headstart.files import atomic_write

__all__ = [
    "enforce_budget",
    "file_signature",
    "new_entry",
    "publish_entry",
    "read_entry",
    "samples_digest",
    "write_entry_meta",
]

log = logging.getLogger(__name__)

SHARED_BUDGET = ("images", "features")
"""Cache folders whose entries share one budget (evicting from either makes room in both)."""
_META = "meta.json"  # written last: an entry without it is incomplete and ignored


def file_signature(path: str | Path) -> str:
    """``path``, size and modification time of a file (``missing`` if it cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except OSError:
        return f"{os.path.abspath(path)}\0missing"
    return f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}"


def samples_digest(samples: Sequence[Sample]) -> str:
    """Hash of the ordered (file signature, label) list of ``samples``."""
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{file_signature(s.path)}\0{s.label}\n".encode())
    return digest.hexdigest()


def enforce_budget(
    root: Path, budget_bytes: int, *, keep: Path | Sequence[Path] | None = None
) -> list[Path]:
    """Delete the least recently used entries beyond ``budget_bytes``.

    Args:
        root: A cache folder whose sub-folders are entries; when it is one of ``SHARED_BUDGET``,
            the entries of the others beside it count (and may be evicted) too.
        budget_bytes: Largest total size to keep.
        keep: Entries never deleted (the ones in use).

    Returns:
        The deleted entries.
    """
    kept = {Path(p).resolve() for p in ([keep] if isinstance(keep, Path) else keep or ())}
    roots = [root]
    if root.name in SHARED_BUDGET:
        roots += [root.parent / name for name in SHARED_BUDGET if name != root.name]
    entries = []
    for folder in roots:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(".") and not _stale(entry):
                continue  # another run's entry being written
            if entry.is_dir():
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                meta = entry / _META
                used = meta.stat().st_mtime if meta.exists() else entry.stat().st_mtime
                entries.append((used, size, entry))
    total = sum(size for _, size, _ in entries)
    removed: list[Path] = []
    for _, size, entry in sorted(entries, key=lambda e: e[0]):
        if total <= budget_bytes:
            break
        if entry.resolve() in kept:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
        removed.append(entry)
        log.info("cache budget %d bytes: evicted %s (%d bytes)", budget_bytes, entry, size)
    return removed


_STALE_SECONDS = 24 * 3600
"""A temporary entry folder this old was left by a killed run; the budget may evict it."""


def _stale(entry: Path) -> bool:
    try:
        return time.time() - entry.stat().st_mtime > _STALE_SECONDS
    except OSError:
        return False


def new_entry(root: Path, key: str) -> Path:
    """A fresh temporary folder in ``root`` to write the entry ``key`` into."""
    folder = root / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    folder.mkdir(parents=True)
    mark_cache_root(folder)
    return folder


def publish_entry(written: Path, root: Path, key: str) -> Path:
    """Move the complete entry ``written`` (from ``new_entry``) into place as ``root/key``.

    When another run published ``key`` meanwhile, its entry is kept and ``written`` deleted (the
    two hold the same data); an incomplete folder in the way (from an older version) is replaced.
    """
    final = root / key
    for _ in range(2):
        try:
            os.rename(written, final)
            return final
        except OSError:
            if read_entry(final) is not None:
                shutil.rmtree(written, ignore_errors=True)
                return final
            shutil.rmtree(final, ignore_errors=True)
    os.rename(written, final)
    return final


def read_entry(folder: Path) -> dict[str, Any] | None:
    """The metadata of a complete cache entry (and mark it used), or ``None``."""
    meta = folder / _META
    if not meta.is_file():
        return None
    os.utime(meta)  # least-recently-used order for eviction
    return json.loads(meta.read_text())


def write_entry_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Mark an entry complete by writing its metadata last (atomically); mark the cache root."""
    mark_cache_root(folder)
    atomic_write(folder / _META, json.dumps(meta))
