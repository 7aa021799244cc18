"""`headstart train` under careless or hostile input: one line, exit 2, nothing written."""

from __future__ import annotations

import io
import logging
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import torch
import yaml

from tests.e2e_helpers import TINY_MODEL, tiny_weights
from tests.e2e_helpers import run_cli as run


@pytest.fixture
def data(tmp_path: Path, image_folder_factory) -> Path:
    return image_folder_factory(tmp_path / "photos", ("cat", "dog"), n=6)


def _tiny(tmp_path: Path) -> list[str]:
    return ["--model", TINY_MODEL, "--weights", str(tiny_weights(tmp_path)), "--image-size", "32",
            "--strategy", "feature-extract", "--epochs", "1"]  # fmt: skip


def _one_line_error(code: int, err: str, needle: str, *, first: bool = True) -> None:
    """Exit 2 with one ``error:`` line (the first output, unless notes may come before it)."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and lines[-1] == errors[0], err
    assert not first or len(lines) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seed", "-1"], "--seed must be a whole number from 0 to 4294967295, got -1"),
        (["--seed", str(10**23)], "--seed must be a whole number from 0 to 4294967295"),
        (["--lr", "nan"], "--lr must be a finite number greater than 0, got nan"),
        (["--lr", "inf"], "--lr must be a finite number greater than 0, got inf"),
        (["--backbone-lr-factor", "-1"], "--backbone-lr-factor must be a finite number at least"),
        (["--image-size", "100000"], "--image-size must be a whole number from 8 to 2048"),
        (["--num-workers", "-1"], "--num-workers must be a whole number from 0 to 256"),
        (["--devices", "0"], "--devices must be a whole number from 1 to 4096, got 0"),
        (["--num-nodes", "0"], "--num-nodes must be a whole number from 1 to 100000"),
        (["--devices", "2", "--budget", "1m"], "--budget plans the run of one process"),
        (["--tracker", "mlfow"], "unknown --tracker 'mlfow'; use one of tensorboard, mlflow"),
        (["--tracker", "wandb,tb"], "unknown --tracker 'tb'; use one of tensorboard, mlflow, w"),
        (["--wandb-mode", "dry"], "unknown --wandb-mode 'dry'; use one of online, offline."),
        (["--mlflow-experiment", " "], "--mlflow-experiment must name an experiment"),
    ],
)
def test_bad_settings_on_the_command_line(tmp_path: Path, data: Path, args, needle) -> None:
    code, _, err = run(["train", str(data), "--out", str(tmp_path / "run"), *args])
    _one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("settings: 5\n", "'settings' must hold a mapping"),
        ("num_workers: -1\n", "--num-workers must be a whole number from 0"),
        ("max_bad_fraction: 5\n", "--max-bad-fraction must be a finite number at least 0 and at"),
        ("epochs: true\n", "setting epochs: True is not a whole number"),
        ("lr: .inf\n", "--lr must be a finite number greater than 0, got inf"),
        ("tracker: [mlflow, nope]\n", "unknown --tracker 'nope'; use one of tensorboard,"),
    ],
)
def test_bad_settings_in_a_config_file(tmp_path: Path, data: Path, text: str, needle: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    code, _, err = run(["train", str(data), "--config", str(config), "--out", str(tmp_path / "r")])
    _one_line_error(code, err, needle)


def test_a_run_folder_is_never_written_inside_flat_data(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data)  # `cd photos && headstart train .`: the default --out is runs/run
    code, _, err = run(["train", ".", *_tiny(tmp_path)])
    _one_line_error(code, err, "lies inside the data folder")
    assert not (data / "runs").exists()


def test_a_split_layout_may_hold_runs_beside_its_splits(tmp_path: Path, image_folder_factory):
    data = image_folder_factory(tmp_path / "d", ("cat", "dog"), n=6, layout="split", n_val=2)
    code, _, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(data / "train" / "r")])
    _one_line_error(code, err, "lies inside the data folder")
    code, out, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(data / "runs" / "a")])
    assert code == 0, err
    code, out, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(data / "runs" / "b")])
    assert code == 0, err  # the first run folder, beside train/ and val/, is not data
    meta = yaml.safe_load((data / "runs" / "b" / "model" / "headstart.json").read_text())
    assert meta["classes"] == ["cat", "dog"]


def test_an_unfinished_run_points_at_resume(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "run"
    assert run(["train", str(data), *_tiny(tmp_path), "--out", str(out)])[0] == 0
    for path in sorted((out / "model").iterdir()):  # as if killed before the model was saved
        path.unlink()
    (out / "model").rmdir()
    code, _, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(out)])
    _one_line_error(code, err, f"headstart train --resume {out}")


def test_an_unwritable_out_is_one_line(tmp_path: Path, data: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    code, _, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(blocker / "run")])
    _one_line_error(code, err, "cannot write the run folder")
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_accelerator_is_refused_even_with_cached_features(tmp_path, data) -> None:
    code, _, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(tmp_path / "r"),
                        "--accelerator", "cuda"])  # fmt: skip
    _one_line_error(code, err, "cannot use accelerator 'cuda'")


def test_divergence_from_the_first_step_is_one_line(tmp_path: Path, data: Path) -> None:
    code, _, err = run(["train", str(data), *_tiny(tmp_path), "--out", str(tmp_path / "r"),
                        "--lr", "1e30"])  # fmt: skip
    _one_line_error(code, err, "training diverged in epoch 1", first=False)
    assert "try a lower --lr" in err


def test_a_warning_note_prints_once() -> None:
    from headstart.cli.console import warnings_as_lines
    from headstart.cli.train import _Progress
    from headstart.pipeline import NOTE_FLAG
    from headstart.pipeline.notes import Notes
    from headstart.training.callbacks import CallbackList

    notes = Notes(CallbackList([_Progress(1)]))
    buffer = io.StringIO()
    with redirect_stderr(buffer), warnings_as_lines(NOTE_FLAG):
        notes.add("4 image(s) broke during training", level=logging.WARNING)
        logging.getLogger("headstart.data.datasets").warning("skipping x.png")
    lines = buffer.getvalue().splitlines()
    assert lines == ["note: 4 image(s) broke during training", "warning: skipping x.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_inference_on_a_missing_device_is_one_line(tmp_path: Path, data: Path, command) -> None:
    code, _, err = run([command, "bundled:efficientnet_lite0", str(data), "--device", "cuda"])
    _one_line_error(code, err, "device 'cuda' is not available: no usable CUDA GPU")
