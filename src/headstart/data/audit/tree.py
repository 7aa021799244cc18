"""The audit's read-only walk of a data folder: images per split and class, and what was skipped.

The tree is walked the way ``load_splits`` walks it (``walk.walk_images`` with the data folder's
``walk.Fence``), but every skipped entry is recorded instead of raised or logged: unlistable
folders, broken symlinks, folder links back into the data (never followed), images outside class
folders, empty class folders, files without an image extension and hidden image files. Folders
headstart wrote (run, report and cache folders, and folders holding only those: ``written``) are
not walked and are never classes; they are listed apart, as they are no user's mistake in a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from headstart.data.audit.inspect import bad_from_os_error
from headstart.data.audit.report import BadFile
from headstart.data.folders import VAL_NAMES
from headstart.data.images import is_image_file
from headstart.data.walk import Fence, Skip, WalkProblem, list_folder, make_fence, walk_images
from headstart.data.written import not_data_reason
from headstart.errors import DataError

__all__ = ["TreeAudit", "audit_tree"]


@dataclass
class TreeAudit:
    """What a read-only walk of a data folder found.

    Attributes:
        images: ``{split: {class: [image paths]}}``; a flat layout has only ``train``.
        bad: Broken symlinks, loops, unreadable folders, images outside class folders, empty
            class folders.
        ignored: Files without an image extension, and hidden files with one (such as macOS
            ``._photo.jpg``); hidden folders are skipped without a word.
        written: Folders headstart wrote (runs, reports, caches), not walked.
    """

    images: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    bad: list[BadFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


def audit_tree(root: str | Path) -> TreeAudit:
    """Walk a data folder (``DATA/<class>/`` or ``DATA/train|val|test/<class>/``), read-only.

    Hidden entries are skipped, as ``load_splits`` does (hidden image files are listed in
    ``ignored``). Folder links are followed once per class folder, and never back into the data
    folder: such a link is recorded as a ``symlink_loop`` and not walked.

    Raises:
        DataError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; check the path.")
    tree = TreeAudit()
    entries = _drop_written(_list(root, tree), tree)
    dirs = {p.name: p for p in entries if p.is_dir()}
    split_dirs = {"train": dirs.get("train"), "test": dirs.get("test")}
    split_dirs["val"] = next((dirs[n] for n in VAL_NAMES if n in dirs), None)
    if split_dirs["train"] is None:
        _audit_class_root(entries, "train", tree, make_fence(root, [root]))
        return tree
    used = {p for p in split_dirs.values() if p is not None}
    fence = make_fence(root, used)
    for other in (p for p in entries if p not in used):
        _mark_outside(other, tree, fence)
    for split, folder in split_dirs.items():
        if folder is not None:
            _audit_class_root(_drop_written(_list(folder, tree), tree), split, tree, fence)
    return tree


def _drop_written(entries: list[Path], tree: TreeAudit) -> list[Path]:
    """``entries`` without the folders headstart wrote, which go to ``tree.written``."""
    kept = []
    for entry in entries:
        if entry.is_dir() and not_data_reason(entry):
            tree.written.append(str(entry))
        else:
            kept.append(entry)
    return kept


def _list(folder: Path, tree: TreeAudit) -> list[Path]:
    """The visible entries of ``folder``; its hidden image files go to ``ignored``."""
    try:
        listing = list_folder(folder)
    except OSError as exc:
        tree.bad.append(_unlistable(folder, exc))
        return []
    tree.ignored.extend(str(p) for p in listing.hidden_images)
    return listing.visible


def _unlistable(folder: Path, exc: OSError | None) -> BadFile:
    if isinstance(exc, PermissionError):
        return BadFile(str(folder), "permission denied listing folder.", "unreadable")
    reason = (exc.strerror or exc) if exc is not None else "unknown error"
    return BadFile(str(folder), f"cannot list: {reason}.", "unreadable")


def _loop(link: Path, fence: Fence) -> BadFile | None:
    """A ``symlink_loop`` if ``link`` (in place of a class folder) leads back to a root."""
    reason = fence.loop_reason(link)
    return BadFile(str(link), reason, "symlink_loop") if reason else None


def _mark_outside(path: Path, tree: TreeAudit, fence: Fence) -> None:
    """Report image files at or under ``path``, which lies outside the class folders."""
    found: list[Path] = []
    loop = _loop(path, fence) if path.is_dir() else None
    if loop is not None:
        tree.bad.append(loop)
    elif path.is_dir():
        found = _walk(path, tree, fence, record=False)
    elif path.is_file() and is_image_file(path):
        found = [path]
    for image in found:
        tree.bad.append(
            BadFile(
                str(image),
                "image outside the class folders, ignored; move it into a class folder.",
                "outside_class",
            )
        )


def _audit_class_root(entries: list[Path], split: str, tree: TreeAudit, fence: Fence) -> None:
    """Walk the class folders among ``entries`` (a split folder's) into ``tree.images[split]``."""
    per_class = tree.images.setdefault(split, {})
    for entry in entries:
        if entry.is_dir():
            loop = _loop(entry, fence)
            if loop is not None:
                tree.bad.append(loop)
                continue
            images = _walk(entry, tree, fence, record=True)
            per_class[entry.name] = [str(p) for p in images]
            if not images:
                reason = "class folder holds no usable images; add images or remove the folder."
                tree.bad.append(BadFile(str(entry), reason, "empty_class"))
        elif entry.is_symlink() or entry.is_file():
            if entry.is_file() and not is_image_file(entry):
                tree.ignored.append(str(entry))
            elif entry.is_file():
                _mark_outside(entry, tree, fence)
            else:
                tree.bad.append(_link_problem(entry))


def _walk(folder: Path, tree: TreeAudit, fence: Fence, *, record: bool) -> list[Path]:
    """Image files under ``folder`` (sorted); with ``record``, log links, loops, other files.

    Unlistable folders, folder links back into the data and folders headstart wrote are always
    recorded.
    """

    def on_problem(problem: WalkProblem) -> None:
        path = problem.path
        if problem.kind is Skip.UNLISTABLE:
            tree.bad.append(_unlistable(path, problem.error))
        elif problem.kind is Skip.LOOP:
            tree.bad.append(BadFile(str(path), problem.reason, "symlink_loop"))
        elif problem.kind is Skip.WRITTEN:
            tree.written.append(str(path))
        elif not record:
            return
        elif problem.kind is Skip.REVISIT:
            reason = (
                f"folder link to {os.path.realpath(path)}, which was already audited; not followed."
            )
            tree.bad.append(BadFile(str(path), reason, "symlink_loop"))
        elif problem.kind in (Skip.NOT_IMAGE, Skip.HIDDEN):
            tree.ignored.append(str(path))
        elif path.is_symlink():  # Skip.NOT_FILE: FIFOs and sockets are passed over
            tree.bad.append(_link_problem(path))

    return walk_images(folder, on_problem=on_problem, fence=fence)


def _link_problem(link: Path) -> BadFile:
    try:
        os.stat(link)
    except OSError as exc:
        return bad_from_os_error(str(link), exc)
    return BadFile(str(link), "link to something that is not a file or folder.", "broken_symlink")
