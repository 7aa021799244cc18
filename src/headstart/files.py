"""Where headstart keeps its caches, and the one atomic file write every writer uses (no torch).

``atomic_write`` writes to a temporary file beside the target, fsyncs it, gives it mode 0644 and
renames it into place, so a reader (or a process killed mid-write) sees the old file or the new
one, never half of one. Temporary files are named ``.<name>.<random>.tmp``; ``sweep_temporaries``
removes the ones a killed process left behind. Folders headstart creates for its outputs are made
0755 by ``make_dirs``: models and reports are made to be shared and served.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "TMP_SUFFIX",
    "atomic_write",
    "cache_dir",
    "make_dirs",
    "previous_path",
    "sweep_temporaries",
]

log = logging.getLogger(__name__)

FILE_MODE = 0o644
"""Mode of every file headstart writes: the owner writes, everyone may read."""
DIR_MODE = 0o755
"""Mode of the output folders headstart creates."""
TMP_SUFFIX = ".tmp"

Content = bytes | str | Callable[[IO[bytes]], None]
"""What ``atomic_write`` writes: bytes, text (UTF-8), or a function that writes into a handle."""


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

