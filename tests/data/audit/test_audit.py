"""The data audit: every bad file reported with a reason, good ones kept, nothing modified."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from headstart.data.audit import BAD_KINDS, audit_folder
from headstart.data.folders import load_splits
from headstart.errors import DataError
from tests.conftest import make_image_folder
from tests.data.conftest import LoopedData


@pytest.mark.parametrize("empty_class", [False, True], ids=["usable-layout", "empty-class"])
def test_corpus_every_bad_file_reported_nothing_modified(
    tmp_path: Path, empty_class: bool, bench: ModuleType
) -> None:
    corpus = bench.build_corpus(tmp_path / "data", empty_class=empty_class)
    before = bench.snapshot(corpus.root)
    report = audit_folder(corpus.root, workers=2)
    score = bench.score(corpus, report)
    assert score["kinds"] >= 30
    assert score["missed"] == {}
    assert score["bad_reported"] == score["bad_total"]
    assert score["good_rejected"] == []
    assert score["without_reason"] == []
    assert score["mislabels"] == []  # no class gained an image, no folder became a class
    assert all(b.kind in BAD_KINDS for b in report.bad)
    assert (report.fatal is not None) == empty_class
    assert sorted(report.written) == sorted(corpus.written)
    assert any("folder(s) that headstart wrote" in w for w in report.warnings)
    json.dumps(report.to_dict())  # JSON-ready
    if not empty_class:  # what train reads, and the one decode function at 224 px
        assert bench.mislabels(corpus, load_splits(corpus.root)) == []
        assert bench.decode_all(corpus) == {}  # thin images refused from the header, no crash
    assert bench.snapshot(corpus.root) == before  # content, size, mode and mtime of every entry


def test_imbalance_duplicates_and_flat_leaks(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("big", "small"), n=1)
    make_image_folder(tmp_path / "more", classes=("big",), n=24, size=(41, 33))
    for path in (tmp_path / "more" / "big").iterdir():
        path.rename(data / "big" / f"x_{path.name}")
    original = data / "small" / "small_000.png"
    (data / "small" / "copy.png").write_bytes(original.read_bytes())  # one lands in val
    report = audit_folder(data, workers=2)
    assert report.to_dict()["counts"]["train"] == {"big": 20, "small": 1}
    (note,) = [w for w in report.warnings if "imbalanced" in w]
    for flag in ("--class-weights balanced", "--sampler balanced", "--monitor val_f1"):
        assert flag in note  # says which flags fix it
    assert len(report.duplicates) == 1 and len(report.duplicates[0]) == 2
    assert len(report.leaks) == 1 and report.leaks[0].split == "val"


def test_symlink_loops_are_bad_entries_and_counts_unchanged(looped_data: LoopedData) -> None:
    report = audit_folder(looped_data.root, workers=2)
    doc = report.to_dict()
    loops = {b["path"]: b["reason"] for b in doc["bad"] if b["kind"] == "symlink_loop"}
    assert sorted(loops) == sorted(looped_data.loops)
    for link, target in looped_data.loops.items():
        assert target in loops[link] and "not followed" in loops[link]
    totals = {c: sum(doc["counts"][s][c] for s in doc["counts"]) for c in doc["classes"]}
    assert totals == looped_data.totals
    assert report.num_bad_samples == 0 and report.fatal is None
    assert report.clean_splits() == load_splits(looped_data.root)  # the same samples
    assert doc["duplicates"] == []


def test_hidden_image_files_are_listed_as_ignored(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", n=3)
    resource_fork = data / "cat" / "._cat_000.png"
    resource_fork.write_bytes(b"\x00\x05\x16\x07")
    hidden = data / "dog" / ".hidden.jpg"
    hidden.write_bytes((data / "dog" / "dog_000.png").read_bytes())
    (data / "dog" / "notes.txt").write_text("x")
    (data / ".git").mkdir()
    (data / ".git" / "logo.png").write_bytes(b"x")
    doc = audit_folder(data, workers=1).to_dict()
    assert doc["ignored"] == [str(resource_fork), str(hidden), str(data / "dog" / "notes.txt")]
    assert doc["bad"] == [] and doc["num_samples"] == 6
    assert (
        "2 hidden file(s) with image extensions (such as macOS ._ files) were ignored."
        in doc["warnings"]
    )
    assert "1 file(s) without an image extension were ignored." in doc["warnings"]


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        audit_folder(tmp_path / "nope")
