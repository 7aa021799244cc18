"""``headstart check``: a readable audit, JSON with --out, exit 0 when usable and 2 when not."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_image_folder
from tests.e2e_helpers import run_cli as run


def test_clean_folder_exits_0_and_writes_json(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), n=4)
    code, out, err = run(["check", str(data), "--out", str(tmp_path / "report.json")])
    assert code == 0, err
    assert "cat" in out and "dog" in out and "can be used" in out
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["bad"] == [] and doc["counts"]["train"] == {"cat": 3, "dog": 3}


def test_bad_files_are_listed_and_fraction_decides(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), n=4)
    (data / "cat" / "note.jpg").write_text("hello")
    code, out, err = run(["check", str(data)])
    assert code == 2
    assert "note.jpg" in out and "text file" in out
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "--max-bad-fraction" in err
    code, out, _ = run(["check", str(data), "--max-bad-fraction", "0.5", "--min-size", "4"])
    assert code == 0 and "note.jpg" in out


def test_empty_class_exits_2_but_lists_files(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), n=3)
    (data / "bird").mkdir()
    (data / "dog" / "empty.png").write_bytes(b"")
    code, out, err = run(["check", str(data)])
    assert code == 2
    assert "bird" in err and len(err.strip().splitlines()) == 1
    assert "empty.png" in out and "zero-byte" in out


def test_missing_or_empty_folder_is_one_line(tmp_path: Path) -> None:
    code, out, err = run(["check", str(tmp_path / "nope")])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, out, err = run(["check", str(tmp_path / "empty")])
    assert code == 2 and out == "" and "empty" in err


def test_loops_and_hidden_files_are_reported(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), n=4)
    (data / "cat" / "loop").symlink_to("..", target_is_directory=True)
    (data / "dog" / "._dog_000.png").write_bytes(b"\x00\x05\x16\x07")
    code, out, err = run(["check", str(data), "--out", str(tmp_path / "report.json")])
    assert code == 0, err
    assert "symlink loops (not followed) (1)" in out and "loop" in out
    assert "1 hidden file(s) with image extensions" in out
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["counts"]["train"] == {"cat": 3, "dog": 3}
    assert [b["kind"] for b in doc["bad"]] == ["symlink_loop"]
    assert doc["ignored"] == [str(data.absolute() / "dog" / "._dog_000.png")]
