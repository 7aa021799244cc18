"""``headstart lr-find`` on generated images with the tiny timm model (offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from headstart.files import folder_kind
from tests.e2e_helpers import TINY_MODEL, run_cli, tiny_weights


@pytest.fixture
def data_and_weights(tmp_path: Path, image_folder_factory) -> tuple[Path, Path]:
    data = image_folder_factory(tmp_path / "data", ("cat", "dog"), n=12)
    return data, tiny_weights(tmp_path)


def _args(data: Path, weights: Path, *more: str) -> list[str]:
    return ["lr-find", str(data), "--model", TINY_MODEL, "--weights", str(weights),
            "--image-size", "32", "--batch-size", "4", *more]  # fmt: skip


def test_lr_find_prints_a_suggestion_and_writes_the_curve(
    data_and_weights: tuple[Path, Path], tmp_path: Path
) -> None:
    data, weights = data_and_weights
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(_args(data, weights, "--strategy", "full", "--out", str(out)))
    assert code == 0, stdout + err
    match = re.search(r"suggested learning rate: (\S+)", stdout)
    assert match is not None and 1e-7 <= float(match.group(1)) <= 10
    assert "swept the full phase of full" in stdout
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert folder_kind(out) == "report"
    assert not any(p.name.startswith("lr_find") for p in data.rglob("*"))


def test_lr_find_defaults_to_runs_lr_find(
    data_and_weights: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, weights = data_and_weights
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(_args(data, weights))  # two-phase: the head phase is swept
    assert code == 0, stdout + err
    assert "swept the head phase of two-phase" in stdout
    assert (tmp_path / "runs" / "lr_find" / "lr_find.png").is_file()


def test_lr_find_never_writes_into_the_data_or_a_users_folder(
    data_and_weights: tuple[Path, Path], tmp_path: Path
) -> None:
    data, weights = data_and_weights
    code, _, err = run_cli(_args(data, weights, "--out", str(data / "sweep")))
    assert code == 2 and "inside the data folder" in err
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    code, _, err = run_cli(_args(data, weights, "--out", str(theirs)))
    assert code == 2 and "not a headstart report" in err
    assert not (data / "sweep").exists() and sorted(p.name for p in theirs.iterdir()) == [
        "notes.txt"
    ]
