"""Class folders and their images, as training, evaluation and prediction read them (read-only).

The one walk (``walk.walk_images``) with this policy: a folder that cannot be listed is a
``DataError``; a folder link back into the data (see ``walk.Fence``), a folder headstart wrote (a
run, report or cache folder, or one holding only such folders: ``written``), a broken link and a
FIFO are each skipped with a warning naming them; files without an image extension are counted in
one warning; hidden files are skipped quietly (the audit lists the hidden image files).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from headstart.data.images import IMAGE_EXTENSIONS, is_image_file
from headstart.data.walk import (
    Fence,
    Skip,
    WalkProblem,
    list_visible,
    make_fence,
    not_file_reason,
    walk_images,
)
from headstart.data.written import not_data_reason
from headstart.errors import DataError

__all__ = [
    "LAYOUT_HINT",
    "check_data_folder",
    "find_images",
    "list_class_images",
    "list_images",
    "report_skipped",
    "visible_entries",
    "warn_written",
]

log = logging.getLogger(__name__)

LAYOUT_HINT = "use DATA/<class>/<image> or DATA/train/<class>/<image> + DATA/val/<class>/<image>"


def check_data_folder(root: Path) -> None:
    """Raise a DataError saying how to fix it unless ``root`` is a folder."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; check the path ({LAYOUT_HINT}).")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder; {LAYOUT_HINT}.")


def visible_entries(folder: Path) -> list[Path]:
    """``walk.list_visible(folder)``.

    Raises:
        DataError: The folder cannot be listed.
    """
    try:
        return list_visible(folder)
    except OSError as exc:
        raise _cannot_list(folder, exc) from None


def _cannot_list(folder: Path, exc: OSError | None) -> DataError:
    reason = (exc.strerror or exc) if exc is not None else "unknown error"
    return DataError(f"cannot list folder {folder}: {reason}.")


def find_images(folder: Path, skipped: list[Path], fence: Fence | None = None) -> list[Path]:
    """Return the image files under ``folder`` (recursive, sorted); append skipped files.

    Args:
        folder: The folder to walk.
        skipped: Receives the files skipped for their extension (see ``report_skipped``).
        fence: The data tree ``folder`` is a class folder of (see ``walk.walk_images``).

    Raises:
        DataError: A folder under ``folder`` cannot be listed.
    """

    def on_problem(problem: WalkProblem) -> None:
        if problem.kind is Skip.UNLISTABLE:
            raise _cannot_list(problem.path, problem.error) from None
        if problem.kind is Skip.LOOP:
            _warn_loop(problem.path, problem.reason)
        elif problem.kind is Skip.WRITTEN:
            warn_written(problem.path, problem.reason)
        elif problem.kind is Skip.REVISIT:
            log.info("skipping %s: folder already walked (a second link to it)", problem.path)
        elif problem.kind is Skip.NOT_FILE:
            log.warning("skipping %s: %s", problem.path, not_file_reason(problem.path))
        elif problem.kind is not Skip.HIDDEN:
            skipped.append(problem.path)

    return walk_images(folder, on_problem=on_problem, fence=fence)


def _warn_loop(link: Path, reason: str) -> None:
    log.warning("skipping %s: %s", link, reason)


def warn_written(folder: Path, reason: str) -> None:
    """Log that ``folder``, which headstart wrote (``reason`` says what), is not read as data."""
    log.warning(
        "skipping %s: %s; keep headstart's outputs (--out, caches) outside the data folder",
        folder,
        reason,
    )


def report_skipped(root: Path, skipped: list[Path]) -> None:
    """Log one warning for the non-image files ``find_images`` skipped under ``root``."""
    if skipped:
        examples = ", ".join(p.name for p in skipped[:3])
        log.warning(
            "skipped %d non-image file(s) under %s (e.g. %s); images need one of: %s",
            len(skipped),
            root,
            examples,
            " ".join(IMAGE_EXTENSIONS),
        )


def list_class_images(root: Path, fence: Fence | None = None) -> dict[str, list[Path]]:
    """Map each class folder name under ``root`` to its sorted image files.

    Args:
        root: A folder of class folders.
        fence: The data tree ``root`` belongs to (default: ``root`` and its class folders);
            folder links back into it are skipped and logged, never walked.

    Folders headstart wrote, and folders holding only such folders, are no classes (logged).

    Raises:
        DataError: ``root`` is missing, empty, holds loose images instead of class folders, or a
            class folder holds no images.
    """
    check_data_folder(root)
    entries = visible_entries(root)
    fence = fence or make_fence(root, [root])
    class_dirs = [p for p in entries if p.is_dir() and not _is_loop(p, fence) and _is_data(p)]
    loose = [p for p in entries if p.is_file() and is_image_file(p)]
    if not class_dirs:
        if loose:
            raise DataError(
                f"images lie directly in {root} ({len(loose)} found) without class folders; move "
                f"them into one folder per class, e.g. {root}/cat/1.jpg, {root}/dog/2.jpg."
            )
        raise DataError(f"data folder {root} is empty; {LAYOUT_HINT}.")
    if loose:
        log.warning(
            "ignoring %d image(s) lying directly in %s, outside class folders", len(loose), root
        )
    skipped: list[Path] = []
    classes = {d.name: find_images(d, skipped, fence) for d in class_dirs}
    report_skipped(root, skipped)
    for name, images in classes.items():
        if not images:
            raise DataError(
                f"class folder {root / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder."
            )
    return classes


def _is_data(class_dir: Path) -> bool:
    """Whether ``class_dir`` may be a class: not a folder headstart wrote (then it is logged)."""
    reason = not_data_reason(class_dir)
    if reason:
        warn_written(class_dir, reason)
    return not reason


def _is_loop(class_dir: Path, fence: Fence) -> bool:
    """Whether ``class_dir`` is a link back to the data or a split folder (then it is logged)."""
    reason = fence.loop_reason(class_dir)
    if reason:
        _warn_loop(class_dir, reason)
    return bool(reason)


def list_images(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand files and folders given to ``predict`` into image files.

    Folders are searched recursively (sorted, hidden entries skipped); files are kept in the order
    given.

    Raises:
        DataError: A path is missing, is a broken link or no regular file (a FIFO, ...), a file
            given explicitly is not an image, or nothing was found.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            skipped: list[Path] = []
            found += find_images(path, skipped)
            report_skipped(path, skipped)
        elif path.is_file():
            if not is_image_file(path):
                raise DataError(
                    f"{path} is not an image file; use one of {', '.join(IMAGE_EXTENSIONS)}."
                )
            found.append(path)
        elif path.exists() or path.is_symlink():
            raise DataError(f"{path} cannot be read as an image: {not_file_reason(path)}.")
        else:
            raise DataError(f"{path} does not exist; check the path.")
    if not found:
        raise DataError(f"no images found in {', '.join(str(i) for i in items) or 'the input'}.")
    return found
