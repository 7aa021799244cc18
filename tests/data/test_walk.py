"""The one image walk: images found, everything skipped handed to the callback, in order."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from headstart.data import walk
from headstart.data.audit import BadFile, audit_tree
from headstart.data.folders import load_splits
from headstart.data.walk import (
    Listing,
    Skip,
    WalkProblem,
    list_folder,
    list_visible,
    make_fence,
    walk_images,
)
from headstart.errors import DataError
from tests.conftest import make_image_folder


def _walk(folder: Path) -> tuple[list[str], list[tuple[Skip, str]]]:
    problems: list[WalkProblem] = []
    images = walk_images(folder, on_problem=problems.append)
    rel = [str(p.relative_to(folder)) for p in images]
    return rel, [(p.kind, str(p.path.relative_to(folder))) for p in problems]


def test_images_sorted_hidden_skipped_others_reported(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("b", "a"), n=2)
    (root / "a" / "deep" / "deeper").mkdir(parents=True)
    (root / "b" / "b_001.png").rename(root / "a" / "deep" / "deeper" / "z.PNG")
    (root / ".git").mkdir()
    (root / ".git" / "x.png").write_bytes(b"x")
    (root / "a" / ".hidden.png").write_bytes(b"x")
    (root / "a" / "._photo.JPG").write_bytes(b"x")  # macOS resource fork
    (root / "a" / ".DS_Store").write_bytes(b"x")  # hidden, no image extension: silent
    (root / "a" / ".thumbs.png").mkdir()  # a hidden folder: silent
    (root / "a" / "notes.txt").write_text("x")
    (root / "a" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    os.mkfifo(root / "a" / "pipe.png")
    images, problems = _walk(root)
    assert images == [
        "a/a_000.png",
        "a/a_001.png",
        "a/deep/deeper/z.PNG",
        "b/b_000.png",
    ]
    assert problems == [  # in walk order; a folder's hidden image files when it is listed
        (Skip.HIDDEN, "a/._photo.JPG"),
        (Skip.HIDDEN, "a/.hidden.png"),
        (Skip.NOT_FILE, "a/gone.jpg"),
        (Skip.NOT_IMAGE, "a/notes.txt"),
        (Skip.NOT_FILE, "a/pipe.png"),
    ]


def test_folder_links_are_followed_once(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("cat",), n=1)
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    (root / "again").symlink_to(root / "cat", target_is_directory=True)
    images, problems = _walk(root)
    assert len(images) == 1  # cat/cat_000.png or again/cat_000.png, whichever is walked first
    assert {kind for kind, _ in problems} == {Skip.REVISIT}
    assert len(problems) == 2  # the second of cat/again, and the loop inside the first


@pytest.fixture
def locked_cat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A flat data folder whose ``cat`` folder cannot be listed by the walk (also as root)."""
    root = make_image_folder(tmp_path / "d", n=1)
    real = walk.list_folder

    def list_folder_or_deny(folder: Path) -> Listing:
        if folder.name == "cat":
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(walk, "list_folder", list_folder_or_deny)
    return root


def test_unlistable_folder_is_reported_and_may_stop_the_walk(locked_cat: Path) -> None:
    images, problems = _walk(locked_cat)
    assert images == ["dog/dog_000.png"]
    assert problems == [(Skip.UNLISTABLE, "cat")]

    def stop(problem: WalkProblem) -> None:
        assert isinstance(problem.error, PermissionError)
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop") as info:
        walk_images(locked_cat, on_problem=stop)
    assert info.value.__context__ is None  # raised outside the listing's except block


def test_load_splits_raises_and_the_audit_records(locked_cat: Path) -> None:
    with pytest.raises(DataError, match=r"cannot list folder .*cat: Permission denied\."):
        load_splits(locked_cat)
    tree = audit_tree(locked_cat)
    cat = str(locked_cat / "cat")
    assert BadFile(cat, "permission denied listing folder.", "unreadable") in tree.bad
    assert tree.images["train"] == {"cat": [], "dog": [str(locked_cat / "dog" / "dog_000.png")]}


def test_list_visible_raises_os_errors(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").write_text("x")
    (tmp_path / ".c").write_text("x")
    assert list_visible(tmp_path) == [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(OSError):
        list_visible(tmp_path / "missing")


def test_list_folder_keeps_hidden_image_files_apart(tmp_path: Path) -> None:
    for name in ("b.png", "._b.png", ".a.jpeg", ".DS_Store", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".git.png").mkdir()
    listing = list_folder(tmp_path)
    assert listing.visible == [tmp_path / "b.png", tmp_path / "notes.txt"]
    assert listing.hidden_images == [tmp_path / "._b.png", tmp_path / ".a.jpeg"]


def test_folder_links_back_into_the_data_are_never_walked(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n=2)
    make_image_folder(tmp_path / "elsewhere", classes=("x",), n=3)
    for name, target in {"loop": "..", "up": "../..", "self": ".", "to_b": "../b"}.items():
        (root / "a" / name).symlink_to(target, target_is_directory=True)
    (root / "a" / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    fence = make_fence(root, [root])
    problems: list[WalkProblem] = []
    images = walk_images(root / "a", on_problem=problems.append, fence=fence)
    assert [str(p.relative_to(root / "a")) for p in images] == [
        "a_000.png",
        "a_001.png",
        "out/x/x_000.png",
        "out/x/x_001.png",
        "out/x/x_002.png",
    ]
    loops = {p.path.name: p.reason for p in problems}
    assert {p.kind for p in problems} == {Skip.LOOP}
    assert sorted(loops) == ["loop", "self", "to_b", "up"]
    assert loops["loop"].startswith(f"folder link to {root}, ") and "(a loop)" in loops["loop"]
    assert loops["to_b"].startswith(f"folder link to {root / 'b'}, ")
    assert all("not followed" in reason for reason in loops.values())
    assert len(walk_images(root / "a", on_problem=lambda p: None)) > 5  # no fence: walked


def test_folders_headstart_wrote_are_skipped_not_walked(tmp_path: Path) -> None:
    from headstart.files import mark_folder
    from tests.data.test_written import old_run_folder

    root = make_image_folder(tmp_path / "d", classes=("cat",), n=1)
    for name, kind in (("run", "run"), ("report", "report"), ("cache", "cache")):
        make_image_folder(mark_folder(root / "cat" / name, kind), classes=("x",), n=1)
    make_image_folder(old_run_folder(root / "cat" / "deep" / "old_run"), classes=("y",), n=1)
    images, problems = _walk(root / "cat")
    assert images == ["cat_000.png"]
    assert sorted(problems) == [
        (Skip.WRITTEN, "cache"),
        (Skip.WRITTEN, "deep/old_run"),
        (Skip.WRITTEN, "report"),
        (Skip.WRITTEN, "run"),
    ]
    reasons: list[WalkProblem] = []
    walk_images(root / "cat", on_problem=reasons.append)
    assert {p.reason for p in reasons} == {
        f"a {kind} folder headstart wrote, not images" for kind in ("run", "report", "cache")
    }


def test_the_walked_folder_itself_is_not_checked(tmp_path: Path) -> None:
    from headstart.files import mark_folder

    marked = make_image_folder(mark_folder(tmp_path / "cache", "cache"), classes=("a",), n=2)
    images, problems = _walk(marked)  # data kept inside headstart's cache, given as the data
    assert images == ["a/a_000.png", "a/a_001.png"] and problems == []


def test_not_file_reasons(tmp_path: Path) -> None:
    from headstart.data.walk import not_file_reason

    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    os.mkfifo(tmp_path / "pipe.png")
    assert not_file_reason(tmp_path / "gone.png") == (
        f"broken symlink to {tmp_path / 'nowhere.png'}; fix or remove the link"
    )
    assert not_file_reason(tmp_path / "loop.png") == "symlink loop; fix or remove the link"
    assert not_file_reason(tmp_path / "pipe.png").startswith("not a regular file (a FIFO")
