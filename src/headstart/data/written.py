"""Telling the folders headstart wrote (runs, reports, caches) from a user's folders of images.

A folder headstart writes carries a marker (``files.mark_folder``). Run and model folders written
by versions from before the marker are recognised by the file they hold: a run folder's
``splits.json`` or a model folder's ``headstart.json``, when the file says it is headstart's (its
JSON ``"format"``). The data walk never takes such a folder in as images. ``mark_cache_root``
marks the cache folder whenever the data layer writes into it.

The two file names are spelt here too, although ``run_folder`` and ``artifact`` own them: this
module sits below them (layer 2) and only reads the names to recognise old folders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from headstart.files import cache_dir, folder_kind, is_within, mark_folder

__all__ = [
    "CACHE_KIND",
    "MODEL_FORMAT",
    "SPLITS_FORMAT",
    "json_format",
    "mark_cache_root",
    "not_data_reason",
    "written_kind",
]

SPLITS_FORMAT = "headstart-splits"
"""The ``"format"`` of a run's ``splits.json`` (``folders.splits_json``)."""
MODEL_FORMAT = "headstart-model"
"""The ``"format"`` of a model folder's ``headstart.json`` (``artifact``)."""
CACHE_KIND = "cache"
"""The kind of the marker on ``files.cache_dir()``."""

_OLD_FOLDERS = (("splits.json", SPLITS_FORMAT, "run"), ("headstart.json", MODEL_FORMAT, "model"))
_HEAD_BYTES = 4096
_FORMAT_FIELD = re.compile(rb'"format"\s*:\s*"([^"\\]{1,64})"')


def mark_cache_root(path: str | Path) -> None:
    """Mark ``files.cache_dir()`` as a folder headstart wrote when ``path`` (a cache entry or
    file about to be written) lies in it; called wherever the data layer writes into the cache."""
    root = cache_dir()
    if is_within(path, root):
        mark_folder(root, CACHE_KIND)


def json_format(path: str | Path) -> str | None:
    """The ``"format"`` field near the start of the JSON file ``path``, or None.

    Only the first 4 KiB are read (headstart writes ``"format"`` first), so a huge file costs no
    more than a small one; a missing or unreadable file, or one without the field, gives None.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return None
    found = _FORMAT_FIELD.search(head)
    return found.group(1).decode("utf-8", "replace") if found else None


def written_kind(folder: str | Path) -> str | None:
    """The kind of folder headstart wrote ``folder`` as (run, report, cache, model, ...), or None.

    A marked folder gives its marker's kind; an unmarked one holding a headstart ``splits.json``
    is an old run folder ("run") and one holding a headstart ``headstart.json`` an old model
    folder ("model").
    """
    folder = Path(folder)
    kind = folder_kind(folder)
    if kind is not None:
        return kind
    for name, fmt, old_kind in _OLD_FOLDERS:
        if json_format(folder / name) == fmt:
            return old_kind
    return None


def not_data_reason(folder: Path) -> str | None:
    """Why the folder ``folder`` (where a class or split folder could be) holds no data; or None.

    Headstart wrote it, or it holds nothing but folders headstart wrote (``DATA/runs/`` with
    run folders in it), so it must not become a class.
    """
    kind = written_kind(folder)
    if kind is not None:
        return f"a {kind} folder headstart wrote, not images"
    found: set[str] = set()
    try:
        with os.scandir(folder) as entries:  # read lazily: stops at the first user's entry
            for entry in entries:
                if entry.name.startswith("."):  # hidden, as walk.is_hidden
                    continue
                kind = written_kind(entry.path) if entry.is_dir() else None
                if kind is None:
                    return None
                found.add(kind)
    except OSError:
        return None  # the walk reports it
    if not found:
        return None
    return f"it holds only folders headstart wrote ({', '.join(sorted(found))}), not images"
