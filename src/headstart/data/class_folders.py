"""Class folders and their images, as training, evaluation and prediction read them (read-only).

The one walk (``walk.walk_images``) with this policy: a folder that cannot be listed is a
``DataError``; a folder link back into the data (see ``walk.Fence``) is skipped with a warning
naming it; files without an image extension are counted in one warning; hidden files are
skipped quietly (the audit lists the hidden image files).
"""

from __future__ import annotations

import logging
from pathlib import Path

from headstart.data.images import IMAGE_EXTENSIONS, is_image_file
from headstart.data.walk import Fence, Skip, WalkProblem, list_visible, make_fence, walk_images
from headstart.errors import DataError

__all__ = [
    "LAYOUT_HINT",
    "check_data_folder",
    "find_images",
    "list_class_images",
    "report_skipped",
    "visible_entries",
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
        elif problem.kind is Skip.REVISIT:
            log.info("skipping %s: folder already walked (a second link to it)", problem.path)
        elif problem.kind is not Skip.HIDDEN:
            skipped.append(problem.path)

    return walk_images(folder, on_problem=on_problem, fence=fence)


def _warn_loop(link: Path, reason: str) -> None:
    log.warning("skipping %s: %s", link, reason)


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

    Raises:
        DataError: ``root`` is missing, empty, holds loose images instead of class folders, or a
            class folder holds no images.
    """
    check_data_folder(root)
    entries = visible_entries(root)
    fence = fence or make_fence(root, [root])
    class_dirs = [p for p in entries if p.is_dir() and not _is_loop(p, fence)]
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


def _is_loop(class_dir: Path, fence: Fence) -> bool:
    """Whether ``class_dir`` is a link back to the data or a split folder (then it is logged)."""
    reason = fence.loop_reason(class_dir)
    if reason:
        _warn_loop(class_dir, reason)
    return bool(reason)
