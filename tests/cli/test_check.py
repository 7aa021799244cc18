"""``headstart check``: a readable audit, JSON with --out, exit 0 when usable and 2 when not."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from headstart.cli import check as check_module
from headstart.cli.main import app, main
from tests.conftest import make_image_folder


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    """Register ``check`` on the app for these tests unless cli/main.py already does."""
    names = [c.name for c in app.registered_commands]
    added = "check" not in names
    if added:
        app.command("check", no_args_is_help=True)(check_module.check)
    yield
    if added:
        app.registered_commands.pop()


def run(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process through ``main`` (the real error boundary)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


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
