import random

import numpy as np
import pytest
import torch

from headstart.errors import CheckpointError
from headstart.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def test_save_load_round_trip_leaves_no_temp_files(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "history": [{"a": 1.5, "b": "x"}]}
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, state)
    save_checkpoint(path, {**state, "epoch": 4})  # overwrite in place
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 4 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_save_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint(path, {"bad": lambda: None})
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_or_missing_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt is corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_latest_falls_back_to_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1}, keep_previous=True)
    save_checkpoint(path, {"epoch": 2}, keep_previous=True)
    path.unlink()  # killed between the two renames on a file system without hard links
    state, used = load_latest_checkpoint(path)
    assert state == {"epoch": 1} and used.name == "last.prev.pt"
