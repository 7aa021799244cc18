"""One read-only walk over image folders, shared by ``load_splits`` and the data audit.

The walk lists folders (hidden entries skipped, sorted), follows folder symlinks but never walks
the same real folder twice, and returns the image files. Given the ``Fence`` of a data folder, it
never follows a folder link back into the data: to the class folder being walked, a split folder,
the data folder, a folder above one of them, or into another class's folder (such a link would
give other classes' images this class's label). Whatever it skips is handed to an ``on_problem``
callback, which decides what to do: ``folders`` raises or logs, the audit records the problem in
its report.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from headstart.data.images import is_image_file
from headstart.data.written import written_kind

__all__ = [
    "Fence",
    "Listing",
    "Skip",
    "WalkProblem",
    "is_hidden",
    "list_folder",
    "list_visible",
    "make_fence",
    "not_file_reason",
    "walk_images",
]


class Skip(Enum):
    """Why the walk skipped an entry."""

    UNLISTABLE = "unlistable"
    """A folder that cannot be listed (``WalkProblem.error`` says why); its contents are skipped."""
    REVISIT = "revisit"
    """A folder whose real path was already walked (a second link to it)."""
    LOOP = "loop"
    """A folder link back into the data (see ``Fence``; ``WalkProblem.reason`` says where)."""
    NOT_IMAGE = "not_image"
    """A regular file without an image extension."""
    NOT_FILE = "not_file"
    """Neither a folder nor a regular file: a broken symlink, a FIFO, a socket, ..."""
    HIDDEN = "hidden"
    """A hidden file with an image extension, such as macOS ``._photo.jpg``."""
    WRITTEN = "written"
    """A folder headstart wrote (run, report, cache; ``WalkProblem.reason`` says which)."""


@dataclass(frozen=True)
class WalkProblem:
    """An entry the walk skipped: what, where, the error (``UNLISTABLE``), the reason (``LOOP``,
    ``WRITTEN``)."""

    kind: Skip
    path: Path
    error: OSError | None = None
    reason: str = ""


OnProblem = Callable[[WalkProblem], None]
"""Called for each skipped entry, in walk order; it may raise to stop the walk."""


def is_hidden(path: str | Path) -> bool:
    """Whether the walk skips ``path`` as hidden: its name starts with a dot."""
    return os.path.basename(os.fspath(path)).startswith(".")


def not_file_reason(path: Path) -> str:
    """Why ``path``, neither a folder nor a regular file, is not read: a broken link, a loop, a
    FIFO, socket or device."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop; fix or remove the link"
        if path.is_symlink():
            return f"broken symlink to {os.readlink(path)}; fix or remove the link"
        return f"cannot read it: {exc.strerror or exc}"
    return "not a regular file (a FIFO, socket or device); give image files"


@dataclass(frozen=True)
class Listing:
    """A folder's entries: the visible ones and the hidden files with image extensions.

    Attributes:
        visible: The visible entries, sorted.
        hidden_images: Hidden files with image extensions, sorted.
        folders: The visible entries that are folders (links to folders too).
        files: The visible entries that are regular files (links to them too).
    """

    visible: list[Path]
    hidden_images: list[Path]
    folders: frozenset[Path] = frozenset()
    files: frozenset[Path] = frozenset()


def list_folder(folder: Path) -> Listing:
    """List ``folder``: visible entries sorted; hidden image files (sorted) apart.

    Hidden folders and hidden files without an image extension are left out. Entry types come
    from the listing itself (``os.scandir``), so only links are stat'ed.

    Raises:
        OSError: The folder cannot be listed.
    """
    visible, hidden, folders, files = [], [], set(), set()
    with os.scandir(folder) as entries:
        for entry in entries:
            path = folder / entry.name
            is_dir = _safe(entry.is_dir)
            if not entry.name.startswith("."):
                visible.append(path)
                if is_dir:
                    folders.add(path)
                elif _safe(entry.is_file):
                    files.add(path)
            elif is_image_file(entry.name) and not is_dir:
                hidden.append(path)
    key = _name_order
    return Listing(sorted(visible, key=key), sorted(hidden, key=key), frozenset(folders),
                   frozenset(files))  # fmt: skip


def _name_order(path: Path) -> str:
    """Entries of one folder in ``Path`` order (case-folded where paths are, on Windows)."""
    return os.path.normcase(path.name)


def _safe(check: Callable[[], bool]) -> bool:
    """``DirEntry.is_dir`` / ``is_file``, False where the entry cannot be stat'ed (as ``Path``)."""
    try:
        return check()
    except OSError:
        return False


def list_visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with a dot, sorted.

    Raises:
        OSError: The folder cannot be listed.
    """
    return list_folder(folder).visible


@dataclass(frozen=True)
class Fence:
    """The folders of a data tree that a folder link must never lead back to.

    Attributes:
        roots: Real paths of the data folder and its split folders.
        classes: Real paths of the class folders of every split.
    """

    roots: frozenset[str]
    classes: frozenset[str]

    def loop_reason(self, link: Path, walking: Path | None = None) -> str | None:
        """Why the folder ``link`` must not be followed; None to follow it (or it is no link).

        Args:
            link: A folder found while walking, or in place of a class folder.
            walking: The class folder being walked; None for a link in place of a class folder,
                which is only checked against ``roots``.
        """
        if not link.is_symlink():
            return None
        target = os.path.realpath(link)
        own = None if walking is None else os.path.realpath(walking)
        if _within(os.path.realpath(link.parent), target) or (own and _within(own, target)):
            return (
                f"folder link to {target}, which is or holds the folder it lies in (a loop); "
                "not followed: remove the link."
            )
        fenced = self.roots if own is None else (self.roots | self.classes) - {own}
        if any(_within(folder, target) for folder in fenced):
            return (
                f"folder link to {target}, which is or holds another class's folder; not "
                "followed, as its images would be labelled as this class: remove the link."
            )
        owners = [c for c in self.classes if _within(target, c)]
        owner = max(owners, key=len, default=own)
        if own is not None and owner != own:
            return (
                f"folder link to {target}, inside the class folder {owner}; not followed, as "
                "its images would be labelled as this class: remove the link."
            )
        return None


def _within(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def make_fence(data_root: Path, split_dirs: Iterable[Path]) -> Fence:
    """The ``Fence`` of a data folder: it, its split folders and the class folders in them.

    Args:
        data_root: The data folder.
        split_dirs: Folders holding class folders (``[data_root]`` for ``DATA/<class>/``).

    Folders that cannot be listed add no class folders (the walk reports them). A link in place
    of a class folder that leads to a root is not a class folder (``loop_reason`` rejects it).
    """
    split_dirs = list(split_dirs)
    roots = frozenset(os.path.realpath(p) for p in (data_root, *split_dirs))
    fence = Fence(roots, frozenset())
    classes: set[str] = set()
    for split in split_dirs:
        try:
            entries = list_visible(split)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir() and fence.loop_reason(entry) is None:
                classes.add(os.path.realpath(entry))
    return Fence(roots, frozenset(classes))


def walk_images(folder: Path, *, on_problem: OnProblem, fence: Fence | None = None) -> list[Path]:
    """Return the image files under ``folder`` (recursive, sorted); report the rest.

    Args:
        folder: The folder to walk; it is only listed and stat'ed, never opened for writing.
        on_problem: Called with every skipped entry (see ``Skip``).
        fence: The data tree ``folder`` is a class folder of; folder links leading back into it
            are skipped as ``Skip.LOOP``. None follows every folder link (once).

    Folders below ``folder`` that headstart wrote are skipped as ``Skip.WRITTEN``.
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
        listing = _entries(current, on_problem)
        for entry in listing.visible:
            if entry in listing.folders:
                problem = _folder_problem(entry, folder, fence)
                if problem:
                    on_problem(problem)
                else:
                    stack.append(entry)
            elif entry not in listing.files:
                on_problem(WalkProblem(Skip.NOT_FILE, entry))
            elif is_image_file(entry):
                images.append(entry)
            else:
                on_problem(WalkProblem(Skip.NOT_IMAGE, entry))
    return sorted(images)


def _folder_problem(entry: Path, walking: Path, fence: Fence | None) -> WalkProblem | None:
    """Why the folder ``entry`` found under ``walking`` is not walked (a loop, headstart's own)."""
    reason = fence.loop_reason(entry, walking) if fence else None
    if reason:
        return WalkProblem(Skip.LOOP, entry, reason=reason)
    kind = written_kind(entry)
    if kind:
        return WalkProblem(
            Skip.WRITTEN, entry, reason=f"a {kind} folder headstart wrote, not images"
        )
    return None


def _entries(folder: Path, on_problem: OnProblem) -> Listing:
    """The listing of ``folder`` after reporting its hidden image files (``Skip.HIDDEN``).

    A folder that cannot be listed has no entries; it is reported as ``Skip.UNLISTABLE``.
    """
    try:
        listing = list_folder(folder)
    except OSError as exc:
        problem = WalkProblem(Skip.UNLISTABLE, folder, exc)
    else:
        for hidden in listing.hidden_images:
            on_problem(WalkProblem(Skip.HIDDEN, hidden))
        return listing
    on_problem(problem)  # outside the except block, so an error it raises chains nothing
    return Listing([], [])
