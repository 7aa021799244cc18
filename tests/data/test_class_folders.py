"""Class folders as load_splits reads them: loops skipped and named, hidden files passed over."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from headstart.data.audit import audit_tree
from headstart.data.folders import load_splits
from tests.conftest import make_image_folder
from tests.data.conftest import LoopedData


def test_load_splits_skips_and_names_loops(
    looped_data: LoopedData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="headstart.data.class_folders"):
        splits = load_splits(looped_data.root)
    per_class = [sum(n) for n in zip(*splits.counts().values(), strict=True)]
    assert dict(zip(splits.classes, per_class, strict=True)) == looped_data.totals
    for link, target in looped_data.loops.items():
        assert any(link in m and target in m for m in caplog.messages), link
    for sample in splits.train + splits.val:
        assert not any(sample.path.startswith(link) for link in looped_data.loops)


def test_a_class_folder_linked_back_to_the_data_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n=3, layout="split")
    (root / "train" / "all").symlink_to(".", target_is_directory=True)
    (root / "train" / "up").symlink_to("..", target_is_directory=True)
    (root / "train" / "vals").symlink_to("../val", target_is_directory=True)
    splits = load_splits(root)
    assert splits.classes == ("a", "b") and splits.counts()["train"] == [3, 3]
    assert sum("skipping" in m and "/train/vals" in m for m in caplog.messages) == 1
    found = {b.path: b for b in audit_tree(root).bad}
    for name in ("all", "up", "vals"):
        assert found[str(root / "train" / name)].kind == "symlink_loop"


def test_hidden_files_are_skipped_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n=3)
    (root / "a" / "._a_000.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "b" / ".DS_Store").write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="headstart.data"):
        splits = load_splits(root)
    assert sum(splits.counts()["train"]) + sum(splits.counts()["val"]) == 6
    assert not any("._a_000" in m or "DS_Store" in m for m in caplog.messages)
