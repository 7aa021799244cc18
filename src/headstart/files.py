"""Where headstart keeps its caches, the one atomic file write every writer uses, and the marks
on the folders headstart writes (no torch).

``atomic_write`` writes to a temporary file beside the target, fsyncs it, gives it mode 0644 and
renames it into place, so a reader (or a process killed mid-write) sees the old file or the new
one, never half of one. Temporary files are named ``.<name>.<random>.tmp``; ``sweep_temporaries``
removes the ones a killed process left behind. Folders headstart creates for its outputs are made
0755 by ``make_dirs``: models and reports are made to be shared and served.

Every output folder headstart writes (run folders, report folders, the cache) holds a small
``.headstart`` marker (``mark_folder``); the data walk never takes a marked folder in as images,
and ``folder_kind`` tells a folder headstart wrote from a user's folder before anything in it is
replaced. ``refuse_inside`` keeps outputs out of a data folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from headstart.errors import ConfigError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "MARKER",
    "TMP_SUFFIX",
    "DEFAULT_CACHE_BUDGET",
    "atomic_write",
    "cache_budget",
    "cache_dir",
    "parse_size",
    "folder_kind",
    "is_within",
    "make_dirs",
    "mark_folder",
    "previous_path",
    "refuse_inside",
    "sweep_temporaries",
]

log = logging.getLogger(__name__)

FILE_MODE = 0o644
"""Mode of every file headstart writes: the owner writes, everyone may read."""
DIR_MODE = 0o755
"""Mode of the output folders headstart creates."""
TMP_SUFFIX = ".tmp"
MARKER = ".headstart"
"""The file that marks a folder headstart wrote (a run, a report, the cache)."""
_MARKER_FORMAT = "headstart-folder"

Content = bytes | str | Callable[[IO[bytes]], None]
"""What ``atomic_write`` writes: bytes, text (UTF-8), or a function that writes into a handle."""


DEFAULT_CACHE_BUDGET = "10GiB"
"""The most disk the decoded images and features of the cache may take together (oldest evicted)."""
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS.update({u: 1024**n for n, u in enumerate(("k", "m", "g", "t"), 1)})
_SIZE_UNITS.update({u + "ib": 1024**n for n, u in enumerate(("k", "m", "g", "t"), 1)})


def parse_size(text: str, *, name: str = "--cache-budget") -> int:
    """Bytes in a size such as ``10GiB``, ``500MB``, ``2G`` (binary) or ``0``.

    Raises:
        ConfigError: ``text`` is not a size (``name`` is the setting it came from).
    """
    import re

    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(text).lower())
    if found is None or found.group(2) not in _SIZE_UNITS:
        raise ConfigError(
            f"{name} {text!r} is not a size; write it like 10GiB, 500MB, 2G or 0 (no cache)."
        )
    return int(float(found.group(1)) * _SIZE_UNITS[found.group(2)])


def cache_budget(setting: str | None = None) -> int:
    """The cache budget in bytes: ``setting`` (``--cache-budget``), else
    ``$HEADSTART_CACHE_BUDGET``, else ``DEFAULT_CACHE_BUDGET``."""
    if setting is not None:
        return parse_size(setting)
    if env := os.environ.get("HEADSTART_CACHE_BUDGET"):
        return parse_size(env, name="HEADSTART_CACHE_BUDGET")
    return parse_size(DEFAULT_CACHE_BUDGET)


def cache_dir() -> Path:
    """``$HEADSTART_CACHE``, else ``$XDG_CACHE_HOME/headstart``, else ``~/.cache/headstart``."""
    if env := os.environ.get("HEADSTART_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "headstart"


def make_dirs(path: str | Path) -> Path:
    """Create ``path`` and missing parents; the folders created get ``DIR_MODE`` (umask aside)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        with contextlib.suppress(OSError):
            os.chmod(folder, DIR_MODE)
    return path


def atomic_write(path: str | Path, content: Content, *, keep_previous: bool = False) -> Path:
    """Replace ``path`` with ``content`` atomically; the file gets mode ``FILE_MODE``.

    Args:
        path: The file to write; missing parent folders are created.
        content: Bytes, text (written as UTF-8), or a function writing into a binary handle
            (e.g. ``lambda f: torch.save(state, f)``).
        keep_previous: Keep the file being replaced as :func:`previous_path`; ``path`` itself
            always exists meanwhile (hard link, then rename over it) where links are possible.

    Raises:
        OSError: The file cannot be written; the file that was there is left untouched and the
            temporary file is removed.
    """
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        _before_rename(path)
        if keep_previous and path.exists():
            _keep_previous(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _before_rename(path: Path) -> None:
    """A seam for tests and the kill-and-resume benchmark, which stop processes mid-write."""


def previous_path(path: str | Path) -> Path:
    """Where the file that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_previous(path: Path) -> None:
    """Make ``previous_path(path)`` the current ``path``, leaving ``path`` in place if possible."""
    previous = previous_path(path)
    link = path.with_name(f".{previous.name}.link{TMP_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    try:
        os.link(path, link)
        os.replace(link, previous)
    except OSError:  # no hard links here: move it (``path`` is missing until the next rename)
        os.replace(path, previous)
    _before_rename(previous)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``directory``.

    Returns:
        The files removed (each is logged).
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for stale in sorted(directory.glob(f".*{TMP_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
            log.info("removed %s, left by an interrupted write", stale)
    return removed



def mark_folder(path: str | Path, kind: str) -> Path:
    """Create ``path`` if needed and mark it as a folder headstart writes (``kind``: run, report,
    cache, ...); returns the folder."""
    folder = make_dirs(path)
    marker = folder / MARKER
    if folder_kind(folder) != kind:
        atomic_write(marker, json.dumps({"format": _MARKER_FORMAT, "kind": kind}) + "\n")
    return folder


def folder_kind(path: str | Path) -> str | None:
    """The kind ``path`` was marked with by :func:`mark_folder`, or None (a user's folder)."""
    try:
        doc = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _MARKER_FORMAT:
        return None
    kind = doc.get("kind")
    return kind if isinstance(kind, str) else None


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links resolved; neither need exist)."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def refuse_inside(path: str | Path, data: str | Path, *, flag: str = "--out") -> None:
    """Raise unless ``path`` lies outside the data folder ``data``: headstart never writes into it.

    Raises:
        ConfigError: ``path`` is ``data`` or lies inside it.
    """
    if is_within(path, data):
        raise ConfigError(
            f"{flag} {path} lies inside the data folder {data}; headstart never writes into your "
            f"data: choose a {flag} outside it."
        )
