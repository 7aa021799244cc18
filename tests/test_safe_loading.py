"""A malicious pickle's payload never runs through any entry point that takes a file from a user.

Each case hands headstart a file whose unpickling would create a marker file, then checks for a
one-line error (exit 2) and that the marker never appeared.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from tests.e2e_helpers import TINY_MODEL, run_cli, tiny_weights


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def run(args: list[str]) -> tuple[int, str]:
    code, _, err = run_cli(args)
    return code, err


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def evil_torch_file(path: Path, marker: Path) -> Path:
    """A real torch.save zip whose pickle builds the payload (as a poisoned checkpoint would)."""
    torch.save({"conv1.weight": Payload(marker)}, path)
    return path


def evil_raw_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("safe")
    data = make_image_folder(root / "data", ("a", "b"), n=4, layout="split")
    args = ["train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(root)),
            "--strategy", "feature-extract", "--epochs", "1", "--image-size", "32",
            "--out", str(root / "run")]  # fmt: skip
    assert run(args)[0] == 0
    return root / "run", data


def poisoned_model_dir(good: Path, dest: Path, marker: Path) -> Path:
    """A copy of a good model folder whose model.safetensors is a pickle in disguise."""
    shutil.copytree(good / "model", dest)
    (dest / "model.onnx").unlink(missing_ok=True)
    evil_torch_file(dest / "model.safetensors", marker)
    return dest


@pytest.mark.parametrize("maker", [evil_torch_file, evil_raw_pickle])
def test_train_weights_never_unpickles(
    maker, tmp_path: Path, marker: Path, image_folder_factory
) -> None:
    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=4)
    evil = maker(tmp_path / "evil.pth", marker)
    code, err = run(["train", str(data), "--model", TINY_MODEL, "--weights", str(evil),
                     "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 2, err
    assert str(evil) in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "serve"])
def test_poisoned_model_folder_never_unpickles(
    command: str, good_run: tuple[Path, Path], tmp_path: Path, marker: Path
) -> None:
    run_dir, data = good_run
    evil = poisoned_model_dir(run_dir, tmp_path / "model", marker)
    args = {
        "evaluate": ["evaluate", str(evil), str(data), "--out", str(tmp_path / "eval")],
        "predict": ["predict", str(evil), str(data / "val")],
        "export": ["export", str(evil), "--format", "onnx", "--out", str(tmp_path / "m.onnx")],
        "serve": ["serve", str(evil), "--port", "0"],
    }[command]
    code, err = run(args)
    assert code == 2, err
    assert "model.safetensors" in err
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "serve"])
def test_exported_file_that_is_a_pickle_never_runs(
    command: str, good_run: tuple[Path, Path], tmp_path: Path, marker: Path
) -> None:
    """A torch.save file passed where an exported TorchScript/ONNX model is expected."""
    _, data = good_run
    evil = evil_torch_file(tmp_path / "model.ts", marker)
    assert zipfile.is_zipfile(evil)
    args = {
        "predict": ["predict", str(evil), str(data / "val")],
        "evaluate": ["evaluate", str(evil), str(data), "--out", str(tmp_path / "eval")],
        "serve": ["serve", str(evil), "--port", "0"],
    }[command]
    code, err = run(args)
    assert code == 2, err
    assert not marker.exists()


def test_model_description_is_json_not_pickle(good_run: tuple[Path, Path]) -> None:
    run_dir, _ = good_run
    meta = json.loads((run_dir / "model" / "headstart.json").read_text())
    assert meta["format"] == "headstart-model"
    assert (run_dir / "model" / "model.safetensors").read_bytes()[:1] != b"\x80"


def test_the_payload_really_runs_when_unpickled(tmp_path: Path, marker: Path) -> None:
    """Control: the files above are live ammunition, so the tests above can fail."""
    evil = evil_torch_file(tmp_path / "evil.pth", marker)
    torch.load(evil, weights_only=False)
    assert marker.exists()
