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


def test_demo_data_inside_the_marked_cache_is_still_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.data.audit import audit_folder
    from headstart.data.written import mark_cache_root
    from headstart.files import cache_dir, folder_kind

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    dest = materialize_demo_data(cache_dir() / "demo" / "fashion-mnist")  # where `demo` puts it
    mark_cache_root(dest)
    assert folder_kind(cache_dir()) == "cache"
    splits = load_splits(dest)  # only folders below the data folder are checked, not its parents
    assert len(splits.classes) == 10 and len(splits.train) > 0
    report = audit_folder(dest, workers=1)
    assert report.fatal is None and report.written == [] and report.num_bad_samples == 0
