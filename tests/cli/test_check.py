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


def test_out_inside_the_data_is_refused_and_the_image_kept(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "chk", classes=("cat", "dog"), n=3)
    image = data / "cat" / "cat_000.png"
    before = image.read_bytes()
    for out in (image, data / "report.json", data):
        code, out_text, err = run(["check", str(data), "--out", str(out)])
        assert code == 2 and out_text == "", err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "inside the data folder" in err and "choose a --out outside it" in err
    assert image.read_bytes() == before and not (data / "report.json").exists()


def test_out_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", n=2)
    (tmp_path / "reports").mkdir()
    code, _, err = run(["check", str(data), "--out", str(tmp_path / "reports")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--out {tmp_path / 'reports'} is a folder" in err
    assert str(tmp_path / "reports" / "data_report.json") in err


def test_out_replaces_only_a_data_report(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", n=2)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    code, out, err = run(["check", str(data), "--out", str(notes)])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "is not a headstart data report" in err and "does not overwrite it" in err
    assert f"--out {tmp_path / 'data_report.json'}" in err  # a path that is free
    assert notes.read_text() == "my notes\n"
    report = tmp_path / "report.json"
    assert run(["check", str(data), "--out", str(report)])[0] == 0
    report.write_text(report.read_text().replace('"bad": []', '"bad": [], "old": 1'))
    code, out, err = run(["check", str(data), "--out", str(report)])  # a report: replaced
    assert code == 0, err
    assert '"old"' not in report.read_text() and "report written to" in out


def test_run_and_cache_folders_in_the_data_are_skipped_with_a_warning(tmp_path: Path) -> None:
    from headstart.files import mark_folder

    data = make_image_folder(tmp_path / "photos", classes=("cat", "dog"), n=4)
    make_image_folder(mark_folder(data / "runs" / "run", "run") / "report", ("plots",), n=3)
    code, out, err = run(["check", str(data), "--out", str(tmp_path / "r.json")])
    assert code == 0, err
    assert "warning: 1 folder(s) that headstart wrote" in out and str(data / "runs") in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["classes"] == ["cat", "dog"] and doc["bad"] == []
    assert doc["written"] == [str(data.absolute() / "runs")]
