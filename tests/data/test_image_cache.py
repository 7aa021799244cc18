"""Decoded-image cache: eval output equals the PIL path, keys, reuse, budget, augmentation
(every preset, flips and random erasing on the cached uint8 squares)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.data.cache_store import enforce_budget, file_signature
from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample
from headstart.data.image_cache import CachedImageDataset, build_decoded_cache
from headstart.data.transforms import AUGMENT_PRESETS, build_eval_transform, build_train_transform
from headstart.preprocessing import PreprocessSpec
from tests.conftest import write_image

PRE = PreprocessSpec(input_size=24, crop_pct=0.8)  # resize 30


@pytest.fixture
def samples(tmp_path: Path) -> list[Sample]:
    sizes = [(40, 32), (31, 57), (30, 30), (65, 41)]  # landscape, portrait, exact, odd
    return [
        Sample(str(write_image(tmp_path / "img" / f"{i}.png", (200, 40 * i, 90), s, i)), i % 2)
        for i, s in enumerate(sizes)
    ]


def test_eval_output_equals_pil_path(samples: list[Sample], tmp_path: Path) -> None:
    cache = build_decoded_cache(samples, PRE, root=tmp_path / "c")
    cached = CachedImageDataset(samples, PRE, None, cache)
    plain = ImageDataset(samples, build_eval_transform(PRE))
    for i in range(len(samples)):
        (a, la), (b, lb) = cached[i], plain[i]
        assert la == lb and a.shape == b.shape == (3, 24, 24)
        assert torch.equal(a, b)  # bit-exact: same PIL resize, same crop offsets


def test_cache_is_reused_and_keyed_by_file(samples: list[Sample], tmp_path: Path) -> None:
    first = build_decoded_cache(samples, PRE, root=tmp_path / "c")
    again = build_decoded_cache(samples, PRE, root=tmp_path / "c")
    assert again.folder == first.folder
    before = file_signature(samples[0].path)
    write_image(Path(samples[0].path), (0, 0, 0), (40, 33), 9)
    os.utime(samples[0].path, ns=(1, 1))
    assert file_signature(samples[0].path) != before
    assert build_decoded_cache(samples, PRE, root=tmp_path / "c").folder != first.folder
    other = build_decoded_cache(samples, PRE.with_size(20), root=tmp_path / "c")
    assert other.folder != first.folder


def test_augmented_views_have_the_input_size(samples: list[Sample], tmp_path: Path) -> None:
    ds = CachedImageDataset(
        samples, PRE, "standard", build_decoded_cache(samples, PRE, root=tmp_path)
    )
    image, label = ds[1]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and label == 1


def _value_range(pre: PreprocessSpec) -> tuple[torch.Tensor, torch.Tensor]:
    low = [(0 - m) / s for m, s in zip(pre.mean, pre.std)]
    high = [(1 - m) / s for m, s in zip(pre.mean, pre.std)]
    return torch.tensor(low)[:, None, None] - 1e-5, torch.tensor(high)[:, None, None] + 1e-5


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_cached_and_pil_paths_agree_in_shape_and_range(
    samples: list[Sample], tmp_path: Path, preset: str, interpolation: str
) -> None:
    pre = PreprocessSpec(input_size=24, crop_pct=0.8, interpolation=interpolation)
    options = {"hflip": False, "random_erasing": 0.5}
    cache = build_decoded_cache(samples, pre, root=tmp_path / "c")
    cached = CachedImageDataset(samples, pre, preset, cache, **options)
    plain = ImageDataset(samples, build_train_transform(pre, preset, **options))
    low, high = _value_range(pre)
    torch.manual_seed(0)
    for i in range(len(samples)):
        for (a, la), (b, lb) in [(cached[i], plain[i]) for _ in range(5)]:
            assert la == lb and a.shape == b.shape == (3, 24, 24)
            assert a.dtype == b.dtype == torch.float32
            assert ((low <= a) & (a <= high)).all() and ((low <= b) & (b <= high)).all()


def test_cached_flip_and_erasing_settings_take_effect(tmp_path: Path) -> None:
    from PIL import Image

    row = np.linspace(255, 0, 40).round().astype(np.uint8)  # bright left, dark right
    Image.fromarray(np.repeat(np.tile(row, (40, 1))[:, :, None], 3, axis=2)).save(
        tmp_path / "g.png"
    )
    items = [Sample(str(tmp_path / "g.png"), 0)]
    cache = build_decoded_cache(items, PRE, root=tmp_path / "c")

    def draws(augment: str | None, **options: object) -> list[torch.Tensor]:
        ds = CachedImageDataset(items, PRE, augment, cache, **options)  # type: ignore[arg-type]
        return [ds[0][0] for _ in range(60)]

    def mirrored(out: torch.Tensor) -> bool:
        return bool(out[:, :, :6].mean() < out[:, :, -6:].mean())

    torch.manual_seed(0)
    assert not any(mirrored(out) for out in draws("standard", hflip=False))
    assert any(mirrored(out) for out in draws("standard", hflip=None))
    erased = [(out == 0).all(dim=0).sum() for out in draws("light", random_erasing=1.0)]
    assert min(erased) >= 6  # every draw erases a rectangle to 0 (the mean colour)
    assert max((out == 0).all(dim=0).sum() for out in draws("none", random_erasing=1.0)) >= 6
    evaluation = ImageDataset(items, build_eval_transform(PRE))[0][0]
    assert all(torch.equal(out, evaluation) for out in draws(None, random_erasing=1.0))


def test_broken_file_is_substituted(samples: list[Sample], tmp_path: Path) -> None:
    Path(samples[1].path).write_bytes(b"not an image")
    ds = CachedImageDataset(samples, PRE, None, build_decoded_cache(samples, PRE, root=tmp_path))
    assert samples[1].path in ds.failures
    assert ds[1][1] == samples[2].label


def test_budget_evicts_least_recently_used(tmp_path: Path) -> None:
    for i, name in enumerate(("old", "mid", "new")):
        entry = tmp_path / name
        entry.mkdir()
        (entry / "data.bin").write_bytes(np.zeros(1000, np.uint8).tobytes())
        (entry / "meta.json").write_text("{}")
        os.utime(entry / "meta.json", (1000 + i, 1000 + i))
    removed = enforce_budget(tmp_path, 2100, keep=tmp_path / "old")
    assert [p.name for p in removed] == ["mid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]


def test_thin_images_fail_from_the_header_not_in_memory(tmp_path: Path) -> None:
    from PIL import Image

    thin, upscaled = tmp_path / "thin.png", tmp_path / "upscaled.png"
    Image.new("RGB", (2000, 1)).save(thin)  # 60000x30 once resized
    Image.new("RGB", (64, 4)).save(upscaled)  # 256 pixels, 480x30 = 14400 once resized
    items = [Sample(str(thin), 0), Sample(str(upscaled), 1), Sample(str(thin), 0)]
    cache = build_decoded_cache(items, PRE, root=tmp_path / "c")
    assert list(cache.failures) == [str(thin)]
    assert "2000x1 pixels is too thin or too wide" in cache.failures[str(thin)]
    cache = build_decoded_cache(items, PRE, root=tmp_path / "c", max_pixels=10_000)
    assert "resizing its short side to 30 px would make 480x30" in cache.failures[str(upscaled)]
    assert "2000x1 pixels is too thin or too wide" in cache.failures[str(thin)]  # checked first


def test_the_cache_folder_is_marked(
    samples: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.files import cache_dir, folder_kind

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    build_decoded_cache(samples, PRE)
    assert folder_kind(cache_dir()) == "cache"
    build_decoded_cache(samples, PRE, root=tmp_path / "elsewhere")
    assert folder_kind(tmp_path / "elsewhere") is None


def test_the_audit_fills_the_store_the_datasets_and_evaluation_read(
    tmp_path: Path, image_folder_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.data.audit import audit_splits, read_pass
    from headstart.data.image_cache import cached_eval_inputs
    from headstart.data.image_store import DecodedImageCache, SquareSpec
    from headstart.inference.predict import decode_images

    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=5, size=(37, 29))
    broken = data / "b" / "b_002.png"
    broken.write_bytes(b"<html>")
    report = audit_splits(_splits(data), squares=SquareSpec.of(PRE), workers=1)
    assert report.decoded is not None and [b.path for b in report.bad] == [str(broken)]
    cache = DecodedImageCache(Path(report.decoded))
    train = report.clean_splits().train
    cached = CachedImageDataset(train, PRE, None, cache)
    plain = ImageDataset(train, build_eval_transform(PRE))
    assert all(torch.equal(cached[i][0], plain[i][0]) for i in range(len(train)))
    paths = [s.path for s in report.splits.train]
    stored, errors = cached_eval_inputs(cache, paths, PRE)
    decoded, decode_errors = decode_images(paths, PRE)
    assert stored is not None and decoded is not None and torch.equal(stored, decoded)
    assert [e is None for e in errors] == [e is None for e in decode_errors]
    reads: list[str] = []
    real = read_pass.read_file
    monkeypatch.setattr(read_pass, "read_file", lambda p, **k: reads.append(p) or real(p, **k))
    again = audit_splits(_splits(data), squares=SquareSpec.of(PRE), workers=1)
    assert again.decoded == report.decoded and reads == []  # audit cache and store: no reads
    other = audit_splits(_splits(data), squares=SquareSpec.of(PRE.with_size(20)), workers=1)
    assert other.decoded != report.decoded and len(reads) == 10  # squares only, one read each


def test_the_audit_leaves_the_store_alone_over_the_budget(
    tmp_path: Path, image_folder_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.data.audit import audit_splits
    from headstart.data.image_store import SquareSpec
    from headstart.errors import DataError

    data = image_folder_factory(tmp_path / "data", ("a", "b"), n=3)
    report = audit_splits(_splits(data), squares=SquareSpec.of(PRE), budget_bytes=1000, workers=1)
    assert report.decoded is None and report.num_bad_samples == 0
    assert build_decoded_cache(report.splits.train, PRE, budget_bytes=1000) is None
    monkeypatch.setenv("HEADSTART_CACHE_BUDGET", "1KB")  # 2,700 bytes of squares needed
    with pytest.raises(DataError, match="do not fit the cache budget; raise --cache-budget"):
        CachedImageDataset(report.splits.train, PRE, None, None)


def _splits(data: Path):
    from headstart.data.folders import load_splits

    return load_splits(data, val_fraction=0.2, test_fraction=0.0, seed=0)


def test_the_shared_budget_spares_every_entry_in_use(tmp_path: Path) -> None:
    entries = [("images", "store"), ("features", "old"), ("features", "new")]
    for i, (kind, name) in enumerate(entries):
        entry = tmp_path / kind / name
        entry.mkdir(parents=True)
        (entry / "data.bin").write_bytes(np.zeros(1000, np.uint8).tobytes())
        (entry / "meta.json").write_text("{}")
        os.utime(entry / "meta.json", (1000 + i, 1000 + i))
    in_use = [tmp_path / "features" / "new", tmp_path / "images" / "store"]
    removed = enforce_budget(tmp_path / "features", 0, keep=in_use)
    # the features of a run beside its own decoded images: only the older features go
    assert [p.name for p in removed] == ["old"]
