"""The built-in cifar10 dataset, tested with a tiny fake archive in CIFAR-10's binary format."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.data import cifar
from headstart.data.folders import load_eval_samples, load_splits
from headstart.errors import DataError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_batches(folder: Path, per_file: int = 10) -> None:
    """Write fake batch files: record i has label i % 10 and planes R=label, G=2*label, B=i."""
    folder.mkdir(parents=True)
    (folder / "batches.meta.txt").write_text("\n".join(NAMES) + "\n\n")
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.zeros((per_file, 3073), dtype=np.uint8)
        for i in range(per_file):
            label = i % 10
            records[i, 0] = label
            records[i, 1:1025] = label
            records[i, 1025:2049] = 2 * label
            records[i, 2049:] = i
        records.tofile(folder / name)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)

    def offline(folder: Path) -> None:
        (folder / "cifar-10-binary.tar.gz").write_bytes(b"partial")
        raise OSError("network is unreachable")

    monkeypatch.setattr(cifar, "_download", offline)
    return tmp_path / "cache" / "datasets" / "cifar10"


def test_cifar10_from_extracted_folder(cache: Path) -> None:
    _write_batches(cache / "cifar-10-batches-bin")
    splits = load_splits("cifar10", val_fraction=0.2, seed=0)
    assert splits.classes == tuple(NAMES)
    assert splits.origin["layout"] == "cifar10"
    counts = splits.counts()
    assert counts["train"] == [4] * 10 and counts["val"] == [1] * 10 and counts["test"] == [1] * 10
    assert (cache / ".complete").exists()
    pixel = Image.open(cache / "train" / "dog" / "00005.png").getpixel((3, 3))
    assert pixel == (5, 10, 5)
    # Built once: the PNG folders are reused even when the batches are gone.
    (cache / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    assert load_splits("cifar10", val_fraction=0.2, seed=0) == splits
    assert len(load_eval_samples("cifar10", NAMES)) == 10


def test_cifar10_from_local_archive(cache: Path, tmp_path: Path) -> None:
    _write_batches(tmp_path / "src" / "cifar-10-batches-bin")
    cache.mkdir(parents=True)
    with tarfile.open(cache / "cifar-10-binary.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    splits = load_splits("cifar10", val_fraction=0.5)
    assert len(splits.train) + len(splits.val) == 50 and len(splits.test) == 10


def test_cifar10_offline_says_where_to_put_a_copy(cache: Path) -> None:
    with pytest.raises(DataError, match="cannot download CIFAR-10") as info:
        load_splits("cifar10")
    message = str(info.value)
    assert str(cache) in message and "cifar-10-binary.tar.gz" in message
    assert "cifar-10-batches-bin" in message and "\n" not in message
    assert not (cache / "cifar-10-binary.tar.gz").exists()  # no partial download left behind


def test_malformed_batch(cache: Path) -> None:
    _write_batches(cache / "cifar-10-batches-bin")
    (cache / "cifar-10-batches-bin" / "data_batch_3.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="data_batch_3.bin is not a CIFAR-10 binary batch"):
        load_splits("cifar10")
    assert not (cache / ".complete").exists()
