"""The decoded-image store: squares equal torchvision's resize and crop, the budget is kept,
rows are found by path, and an entry is complete only once finished."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from headstart.data.image_store import (
    DecodedImageCache,
    SquareSpec,
    StoreWriter,
    open_store,
    square_of,
    store_key,
)
from headstart.errors import DataError
from tests.conftest import write_image


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(40, 32), (31, 57), (30, 30), (65, 41), (12, 200)])
def test_squares_equal_torchvisions_resize_and_centre_crop(
    tmp_path: Path, interpolation: str, size: tuple[int, int]
) -> None:
    image = Image.open(write_image(tmp_path / "a.png", (200, 90, 40), size, 3)).convert("RGB")
    resized = v2.Resize(30, interpolation=InterpolationMode(interpolation), antialias=True)(image)
    expected = np.asarray(v2.CenterCrop(30)(resized)).transpose(2, 0, 1)
    square, geometry = square_of(image, SquareSpec(30, interpolation))
    assert square.dtype == np.uint8 and np.array_equal(square, expected)
    assert geometry[:2] == (resized.height, resized.width)


def _filled(root: Path, paths: list[str], spec: SquareSpec) -> DecodedImageCache:
    writer = StoreWriter.create(root, paths, spec, budget_bytes=10**9)
    assert writer is not None
    pixels = np.load(writer.pixels_file, mmap_mode="r+")
    for row, _ in enumerate(paths):
        pixels[row] = row
        writer.geometry[row] = (8, 8, 0, 0)
    del pixels
    return writer.finish()


def test_rows_are_found_by_path_and_a_missing_path_is_named(tmp_path: Path) -> None:
    paths = [str(write_image(tmp_path / f"{i}.png", (9, 9, 9), (8, 8), i)) for i in range(3)]
    spec = SquareSpec(8)
    assert open_store(tmp_path / "c", paths, spec) is None  # nothing there yet
    cache = _filled(tmp_path / "c", paths, spec)
    assert open_store(tmp_path / "c", paths, spec).folder == cache.folder
    assert cache.rows([paths[2], paths[0]]).tolist() == [2, 0]
    assert int(cache.square(2).max()) == 2 and cache.eval_crop(1, 8).shape == (3, 8, 8)
    assert cache.holds(paths) and not cache.holds([str(tmp_path / "other.png")])
    with pytest.raises(DataError, match="does not hold .*other.png"):
        cache.rows([str(tmp_path / "other.png")])


def test_the_key_changes_with_the_files_and_the_settings(tmp_path: Path) -> None:
    paths = [str(write_image(tmp_path / f"{i}.png", (9, 9, 9), (8, 8), i)) for i in range(2)]
    key = store_key(paths, SquareSpec(8))
    assert store_key(paths, SquareSpec(9)) != key
    assert store_key(paths, SquareSpec(8, "bicubic")) != key
    assert store_key(paths[::-1], SquareSpec(8)) != key  # rows follow the order
    write_image(Path(paths[0]), (1, 2, 3), (9, 8), 5)  # edited: new size
    assert store_key(paths, SquareSpec(8)) != key


def test_an_entry_over_the_budget_is_not_written(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{i}.png") for i in range(10)]
    spec = SquareSpec(8)  # 192 bytes a square
    assert StoreWriter.create(tmp_path / "c", paths, spec, budget_bytes=1919) is None
    assert not (tmp_path / "c").exists()
    assert StoreWriter.create(tmp_path / "c", paths, spec, budget_bytes=1920) is not None


def test_an_unfinished_entry_is_not_opened(tmp_path: Path) -> None:
    paths = [str(write_image(tmp_path / "a.png", (9, 9, 9), (8, 8), 0))]
    writer = StoreWriter.create(tmp_path / "c", paths, SquareSpec(8), budget_bytes=10**9)
    assert writer is not None and open_store(tmp_path / "c", paths, SquareSpec(8)) is None
    with pytest.raises(DataError, match="incomplete"):
        DecodedImageCache(writer.folder)


def test_an_entry_travels_to_another_process_without_its_descriptor(tmp_path: Path) -> None:
    import pickle

    paths = [str(write_image(tmp_path / f"{i}.png", (9, 9, 9), (8, 8), i)) for i in range(3)]
    cache = _filled(tmp_path / "c", paths, SquareSpec(8))
    assert int(cache.square(1).max()) == 1  # opens this process's descriptor
    copy = pickle.loads(pickle.dumps(cache))  # as a spawned DataLoader worker gets it
    assert copy._fd is None and "pixels" not in copy.__dict__
    assert np.array_equal(copy.square(2), cache.square(2)) and copy.square(2).flags.writeable


def test_two_runs_filling_one_entry_never_mix_their_files(tmp_path: Path) -> None:
    from headstart.data.cache_store import enforce_budget

    paths = [str(write_image(tmp_path / f"{i}.png", (9, 9, 9), (8, 8), i)) for i in range(3)]
    spec, root = SquareSpec(8), tmp_path / "c"
    first = StoreWriter.create(root, paths, spec, budget_bytes=10**9)
    second = StoreWriter.create(root, paths, spec, budget_bytes=10**9)
    assert first is not None and second is not None and first.folder != second.folder
    assert open_store(root, paths, spec) is None  # nothing is visible while being written
    assert enforce_budget(root, 0) == []  # and the budget leaves entries being written alone
    second.geometry[:] = (8, 8, 0, 0)
    published = second.finish()
    first.geometry[:] = (1, 1, 1, 1)  # different, to tell whose files are kept
    again = first.finish()
    assert again.folder == published.folder == root / store_key(paths, spec)
    assert again.geometry.tolist() == [[8, 8, 0, 0]] * 3  # the first published entry stays
    assert sorted(p.name for p in root.iterdir()) == [published.folder.name]
