"""The one image walk: images found, everything skipped handed to the callback, in order."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from headstart.data import walk
from headstart.data.audit import BadFile, scan_tree
from headstart.data.folders import load_splits
from headstart.data.walk import Skip, WalkProblem, list_visible, walk_images
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
    assert problems == [  # in walk order
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
    real = walk.list_visible

    def list_visible_or_deny(folder: Path) -> list[Path]:
        if folder.name == "cat":
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(walk, "list_visible", list_visible_or_deny)
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
    tree = scan_tree(locked_cat)
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
