"""Scanning class folders, stratified splits, split files and the errors users meet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from headstart.data.datasets import ImageDataset
from headstart.data.folders import (
    DataSplits,
    list_images,
    load_eval_samples,
    load_splits,
    read_splits,
    splits_json,
)
from headstart.data.transforms import build_eval_transform
from headstart.errors import DataError
from headstart.preprocessing import PreprocessSpec


def _paths(samples) -> set[str]:
    return {s.path for s in samples}


def test_flat_layout_split(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path / "d", classes=("dog", "cat", "bird"), n=10)
    splits = load_splits(root, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert splits.classes == ("bird", "cat", "dog")
    assert splits.counts() == {"train": [7] * 3, "val": [2] * 3, "test": [1] * 3}
    assert splits.origin == {
        "layout": "split",
        "root": str(root.absolute()),
        "val_fraction": 0.2,
        "test_fraction": 0.1,
        "seed": 3,
    }
    everything = _paths(splits.train) | _paths(splits.val) | _paths(splits.test)
    assert len(everything) == 30
    for sample in splits.train + splits.val + splits.test:
        assert Path(sample.path).parent.name == splits.classes[sample.label]


def test_split_is_deterministic_per_seed(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path, n=20)
    first, again = load_splits(root, seed=1), load_splits(root, seed=1)
    assert first == again
    other = load_splits(root, seed=2)
    assert _paths(other.val) != _paths(first.val)


def test_every_class_gets_a_val_image(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path, classes=("a", "b"), n=2)
    splits = load_splits(root, val_fraction=0.1)
    assert splits.counts()["val"] == [1, 1] and splits.counts()["train"] == [1, 1]


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
def test_split_layout(tmp_path: Path, image_folder_factory, val_name: str) -> None:
    root = image_folder_factory(tmp_path, n=4, layout="split", n_val=2, n_test=1)
    if val_name != "val":
        (root / "val").rename(root / val_name)
    splits = load_splits(root, val_fraction=0.5)
    assert splits.counts() == {"train": [4, 4], "val": [2, 2], "test": [1, 1]}
    assert splits.origin["layout"] == "folders"
    assert set(splits.origin["dirs"]) == {"train", "val", "test"}
    assert "carved_from_train" not in splits.origin


def test_train_without_val_carves_val(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path, n=5, layout="split")
    shutil.rmtree(root / "val")
    splits = load_splits(root, val_fraction=0.2, seed=7)
    assert splits.counts() == {"train": [4, 4], "val": [1, 1], "test": [0, 0]}
    assert splits.origin["carved_from_train"] == {
        "val_fraction": 0.2,
        "test_fraction": 0.0,
        "seed": 7,
    }


def test_val_class_must_be_in_train(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path, n=3, layout="split")
    image_folder_factory(root / "val", classes=("fox",), n=1)
    with pytest.raises(DataError, match="fox.*not in train"):
        load_splits(root)


def test_errors(tmp_path: Path, image_folder_factory) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_splits(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_splits(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_splits(tmp_path / "empty")
    one = image_folder_factory(tmp_path / "one", classes=("cat",), n=3)
    with pytest.raises(DataError, match="at least 2 classes"):
        load_splits(one)
    image_folder_factory(tmp_path / "loose", classes=("cat",), n=3)
    for path in (tmp_path / "loose" / "cat").iterdir():
        path.rename(tmp_path / "loose" / path.name)
    (tmp_path / "loose" / "cat").rmdir()
    with pytest.raises(DataError, match="directly in .*class folders"):
        load_splits(tmp_path / "loose")


def test_empty_class_folder_is_named(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path, n=3)
    (root / "hamster").mkdir()
    (root / "hamster" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="hamster holds no images"):
        load_splits(root)


def test_hidden_non_image_and_symlink_loop(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path / "d", n=3)
    (root / ".git").mkdir()
    (root / "cat" / ".hidden.png").write_bytes(b"x")
    (root / "cat" / "readme.txt").write_text("x")
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    splits = load_splits(root)
    assert splits.classes == ("cat", "dog")
    assert sum(len(part) for part in (splits.train, splits.val, splits.test)) == 6


def test_save_and_read_splits(tmp_path: Path, image_folder_factory) -> None:
    splits = load_splits(image_folder_factory(tmp_path / "d"), test_fraction=0.2)
    (tmp_path / "splits.json").write_text(splits_json(splits))
    assert read_splits(tmp_path / "splits.json") == splits
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="bad.json"):
        read_splits(tmp_path / "bad.json")


def test_load_eval_samples_maps_classes_by_name(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path / "d", n=2, layout="split", n_val=1, n_test=3)
    samples = load_eval_samples(root, ["dog", "cat", "bird"])
    assert len(samples) == 6  # the test/ folder wins over val/
    assert all(Path(s.path).parent.parent.name == "test" for s in samples)
    assert {Path(s.path).parent.name: s.label for s in samples} == {"dog": 0, "cat": 1}
    flat = image_folder_factory(tmp_path / "flat", n=2)
    assert len(load_eval_samples(flat, ["cat", "dog"])) == 4
    with pytest.raises(DataError, match="model knows: cat, bird"):
        load_eval_samples(flat, ["cat", "bird"])


def test_list_images(tmp_path: Path, image_folder_factory) -> None:
    root = image_folder_factory(tmp_path / "d", n=2)
    (root / "notes.txt").write_text("x")
    found = list_images(root)
    assert [p.name for p in found] == ["cat_000.png", "cat_001.png", "dog_000.png", "dog_001.png"]
    assert list_images([found[3], found[0]]) == [found[3], found[0]]
    with pytest.raises(DataError, match="not an image"):
        list_images(root / "notes.txt")
    with pytest.raises(DataError, match="does not exist"):
        list_images(root / "missing.png")


def test_image_dataset(tmp_path: Path, image_folder_factory) -> None:
    splits: DataSplits = load_splits(image_folder_factory(tmp_path, n=3))
    dataset = ImageDataset(splits.train, build_eval_transform(PreprocessSpec(input_size=16)))
    tensor, label = dataset[0]
    assert tensor.shape == (3, 16, 16)
    assert label == splits.train[0].label and len(dataset) == len(splits.train)
    assert dataset.targets == [s.label for s in splits.train]


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_folders_headstart_wrote_never_become_classes_or_images(
    tmp_path: Path, image_folder_factory, layout: str, caplog: pytest.LogCaptureFixture
) -> None:
    from headstart.files import mark_folder
    from tests.data.test_written import old_run_folder

    root = image_folder_factory(tmp_path / "d", n=5, layout=layout)
    classes = root / "train" if layout == "split" else root
    expected = load_splits(root)
    outputs = [
        mark_folder(root / "runs" / "run", "run"),  # `cd photos && headstart train .`
        mark_folder(classes / "runs" / "run", "run"),
        old_run_folder(classes / "cat" / "run1"),  # `train photos --out photos/cat/run1`, old
        mark_folder(classes / "dog" / "hs-cache", "cache"),  # HEADSTART_CACHE inside the data
    ]
    for folder in outputs:
        image_folder_factory(folder / "report", classes=("plots",), n=2)  # PNGs of a report
    with caplog.at_level("WARNING"):
        splits = load_splits(root)
    assert splits == expected  # no class gained an image, no new class
    warned = [r.getMessage() for r in caplog.records if "headstart wrote" in r.getMessage()]
    for folder in (classes / "runs", classes / "cat" / "run1", classes / "dog" / "hs-cache"):
        assert any(m.startswith(f"skipping {folder}: ") for m in warned), warned
    assert all("outside the data folder" in m for m in warned)


def test_a_run_written_as_data_train_is_no_split_folder(
    tmp_path: Path, image_folder_factory
) -> None:
    from headstart.files import mark_folder

    root = image_folder_factory(tmp_path / "d", n=5)
    expected = load_splits(root)
    image_folder_factory(mark_folder(root / "train", "run") / "report", ("plots", "x"), n=2)
    assert load_splits(root) == expected  # still the flat layout of cat and dog


def test_list_images_says_what_a_path_is(tmp_path: Path, image_folder_factory) -> None:
    import os

    root = image_folder_factory(tmp_path / "d", n=1)
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError) as info:
        list_images(tmp_path / "pipe.png")
    assert str(info.value) == (
        f"{tmp_path / 'pipe.png'} cannot be read as an image: not a regular file (a FIFO, socket "
        "or device); give image files."
    )
    with pytest.raises(DataError) as info:
        list_images(tmp_path / "gone.png")
    assert str(info.value) == (
        f"{tmp_path / 'gone.png'} cannot be read as an image: broken symlink to "
        f"{tmp_path / 'nowhere.png'}; fix or remove the link."
    )
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "missing.png")
    assert len(list_images(root)) == 2


def test_image_roots_are_where_nothing_may_be_written(tmp_path: Path, image_folder_factory) -> None:
    flat = load_splits(image_folder_factory(tmp_path / "flat"))
    assert flat.image_roots() == [str((tmp_path / "flat").absolute())]
    split = image_folder_factory(tmp_path / "split", layout="split", n_val=1)
    roots = load_splits(split).image_roots()
    assert sorted(Path(r).name for r in roots) == ["train", "val"]  # the data root itself is free
