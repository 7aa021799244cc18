"""Folders headstart wrote, marked or from older versions, told apart from a user's folders."""

from __future__ import annotations

import json
from pathlib import Path

from headstart.data.written import (
    json_format,
    mark_cache_root,
    not_data_reason,
    written_kind,
)
from headstart.files import cache_dir, folder_kind, mark_folder


def old_run_folder(path: Path) -> Path:
    """A run folder as versions before the marker wrote it: ``splits.json``, no marker."""
    path.mkdir(parents=True)
    doc = {"format": "headstart-splits", "version": 1, "classes": ["a", "b"], "train": []}
    (path / "splits.json").write_text(json.dumps(doc, indent=1))
    return path


def test_marked_and_old_folders_are_headstarts(tmp_path: Path) -> None:
    assert written_kind(mark_folder(tmp_path / "run", "run")) == "run"
    assert written_kind(mark_folder(tmp_path / "report", "report")) == "report"
    assert written_kind(old_run_folder(tmp_path / "old")) == "run"
    model = tmp_path / "model"
    model.mkdir()
    (model / "headstart.json").write_text(json.dumps({"format": "headstart-model", "x": 1}))
    assert written_kind(model) == "model"


def test_a_users_folder_is_not(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    assert written_kind(user) is None
    (user / "splits.json").write_text(json.dumps({"format": "coco", "train": []}))
    (user / "headstart.json").write_text("not json")
    (user / ".headstart").write_text('{"format": "something-else", "kind": "run"}')
    assert written_kind(user) is None
    assert written_kind(tmp_path / "missing") is None


def test_json_format_reads_only_the_start(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"format": "headstart-splits", "train": [' + "1, " * 200_000 + "1]}")
    assert json_format(path) == "headstart-splits"
    path.write_text('{"train": [' + "1, " * 2000 + '1], "format": "headstart-splits"}')
    assert json_format(path) is None  # beyond the first 4 KiB: headstart writes it first
    assert json_format(tmp_path / "missing.json") is None


def test_a_folder_of_run_folders_is_no_data(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    mark_folder(runs / "run", "run")
    old_run_folder(runs / "run-2")
    (runs / ".DS_Store").write_text("x")  # hidden entries do not count
    assert not_data_reason(runs) == "it holds only folders headstart wrote (run), not images"
    assert not_data_reason(runs / "run") == "a run folder headstart wrote, not images"
    (runs / "photo.png").write_bytes(b"x")
    assert not_data_reason(runs) is None
    (tmp_path / "empty").mkdir()
    assert not_data_reason(tmp_path / "empty") is None


def test_the_cache_root_is_marked_only_for_paths_inside_it(tmp_path: Path) -> None:
    mark_cache_root(tmp_path / "elsewhere" / "entry")
    assert folder_kind(tmp_path / "elsewhere") is None
    mark_cache_root(cache_dir() / "images" / "abc")
    assert folder_kind(cache_dir()) == "cache"
