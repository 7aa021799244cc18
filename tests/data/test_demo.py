"""The packaged Fashion-MNIST demo subset."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from headstart.data.demo import load_demo_arrays, materialize_demo_data
from headstart.data.folders import load_splits
from headstart.errors import DataError


def test_npz_is_small_and_balanced() -> None:
    npz = resources.files("headstart.data").joinpath("demo_data", "fashion_mnist_subset.npz")
    assert len(npz.read_bytes()) < 1_000_000
    arrays = load_demo_arrays()
    assert arrays["train_images"].shape[1:] == (28, 28)
    assert len(arrays["classes"]) == 10


def test_materialize_demo_data(tmp_path: Path) -> None:
    dest = materialize_demo_data(tmp_path / "demo")
    assert dest == tmp_path / "demo"
    folders = sorted(p.name for p in (dest / "train").iterdir())
    assert len(folders) == 10 and "T-shirt_top" in folders and "Ankle_boot" in folders
    assert sorted(p.name for p in (dest / "test").iterdir()) == folders
    splits = load_splits(dest)
    assert splits.classes == tuple(folders)
    assert len(set(splits.counts()["train"])) == 1  # balanced
    assert materialize_demo_data(dest) == dest  # idempotent
    with pytest.raises(DataError, match="not an empty folder"):
        materialize_demo_data(tmp_path / "demo" / "train")
