"""One read-only walk over image folders, shared by ``load_splits`` and the data audit.

The walk lists folders (hidden entries skipped, sorted), follows folder symlinks but never walks
the same real folder twice (so a symlink loop ends), and returns the image files. Whatever it
skips is handed to an ``on_problem`` callback, which decides what to do: ``folders`` raises or
logs, ``scan`` records the problem in the audit report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from headstart.data.images import is_image_file

__all__ = ["Skip", "WalkProblem", "list_visible", "walk_images"]


class Skip(Enum):
    """Why the walk skipped an entry."""

    UNLISTABLE = "unlistable"
    """A folder that cannot be listed (``WalkProblem.error`` says why); its contents are skipped."""
    REVISIT = "revisit"
    """A folder whose real path was already walked (a symlink loop or a second link to it)."""
    NOT_IMAGE = "not_image"
    """A regular file without an image extension."""
    NOT_FILE = "not_file"
    """Neither a folder nor a regular file: a broken symlink, a FIFO, a socket, ..."""


@dataclass(frozen=True)
class WalkProblem:
    """An entry the walk skipped: what, where, and the error for ``Skip.UNLISTABLE``."""

    kind: Skip
    path: Path
    error: OSError | None = None


OnProblem = Callable[[WalkProblem], None]
"""Called for each skipped entry, in walk order; it may raise to stop the walk."""


def list_visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with a dot, sorted.

    Raises:
        OSError: The folder cannot be listed.
    """
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def walk_images(folder: Path, *, on_problem: OnProblem) -> list[Path]:
    """Return the image files under ``folder`` (recursive, sorted); report the rest.

    Args:
        folder: The folder to walk; it is only listed and stat'ed, never opened for writing.
        on_problem: Called with every skipped entry (see ``Skip``).
    """
    images: list[Path] = []
    visited: set[str] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in visited:
            on_problem(WalkProblem(Skip.REVISIT, current))
            continue
        visited.add(real)
        for entry in _entries(current, on_problem):
            if entry.is_dir():
                stack.append(entry)
            elif not entry.is_file():
                on_problem(WalkProblem(Skip.NOT_FILE, entry))
            elif is_image_file(entry):
                images.append(entry)
            else:
                on_problem(WalkProblem(Skip.NOT_IMAGE, entry))
    return sorted(images)


def _entries(folder: Path, on_problem: OnProblem) -> list[Path]:
    """``list_visible(folder)``, or no entries after reporting ``Skip.UNLISTABLE``."""
    try:
        return list_visible(folder)
    except OSError as exc:
        problem = WalkProblem(Skip.UNLISTABLE, folder, exc)
    on_problem(problem)  # outside the except block, so an error it raises chains nothing
    return []
