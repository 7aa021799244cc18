"""The audit's walk of a data folder: images per split and class, everything skipped recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.data.audit import audit_tree
from headstart.errors import DataError
from tests.conftest import make_image_folder
from tests.data.conftest import LoopedData


def test_loops_are_recorded_and_not_walked(looped_data: LoopedData) -> None:
    tree = audit_tree(looped_data.root)
    loops = {b.path: b.reason for b in tree.bad if b.kind == "symlink_loop"}
    assert sorted(loops) == sorted(looped_data.loops)
    for link, target in looped_data.loops.items():
        assert loops[link].startswith(f"folder link to {target}, ")
        assert "not followed" in loops[link]
    found = {c: sum(len(s.get(c, [])) for s in tree.images.values()) for c in "abcd"}
    assert found == looped_data.totals
    assert any("/a/more/" in p for p in tree.images["train"]["a"])  # a link out of the data


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_hidden_image_files_are_ignored_once_hidden_folders_silently(
    tmp_path: Path, layout: str
) -> None:
    root = make_image_folder(tmp_path / "data", n=2, layout=layout)
    classes = root / "train" if layout == "split" else root
    hidden = [
        root / "._top.jpg",
        classes / ".split_level.png",
        classes / "cat" / "._cat_000.png",
        classes / "cat" / "deep" / ".x.webp",
    ]
    for path in hidden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00\x05\x16\x07")  # an AppleDouble header: not an image
    (classes / "cat" / ".DS_Store").write_bytes(b"x")
    (classes / "cat" / ".git").mkdir()
    (classes / "cat" / ".git" / "x.png").write_bytes(b"x")
    tree = audit_tree(root)
    assert sorted(tree.ignored) == sorted(set(map(str, hidden)))  # each once
    assert tree.bad == []
    assert len(tree.images["train"]["cat"]) == 2


def test_a_loop_outside_the_class_folders_is_not_walked(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", n=2, layout="split")
    (root / "notes").mkdir()
    (root / "notes" / "up").symlink_to("..", target_is_directory=True)
    (root / "mirror").symlink_to(".", target_is_directory=True)
    tree = audit_tree(root)
    assert {b.path: b.kind for b in tree.bad} == {
        str(root / "notes" / "up"): "symlink_loop",
        str(root / "mirror"): "symlink_loop",
    }


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        audit_tree(tmp_path / "nope")
