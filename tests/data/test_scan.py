"""The data audit: every bad file reported with a reason, good ones kept, nothing modified."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample, load_splits
from headstart.data.scan import BAD_KINDS, audit_folder, audit_splits, inspect_file
from headstart.errors import DataError
from tests.conftest import make_image_folder

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "reliability_corpus.py"


def _corpus_module() -> ModuleType:
    if "reliability_corpus" not in sys.modules:
        spec = importlib.util.spec_from_file_location("reliability_corpus", _BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["reliability_corpus"] = module
        spec.loader.exec_module(module)
    return sys.modules["reliability_corpus"]


@pytest.mark.parametrize("empty_class", [False, True], ids=["usable-layout", "empty-class"])
def test_corpus_every_bad_file_reported_nothing_modified(tmp_path: Path, empty_class: bool) -> None:
    bench = _corpus_module()
    corpus = bench.build_corpus(tmp_path / "data", empty_class=empty_class)
    before = bench.snapshot(corpus.root)
    report = audit_folder(corpus.root, workers=2)
    assert bench.snapshot(corpus.root) == before  # content, size, mode and mtime of every entry
    score = bench.score(corpus, report)
    assert score["kinds"] >= 15
    assert score["missed"] == {}
    assert score["bad_reported"] == score["bad_total"]
    assert score["good_rejected"] == []
    assert score["without_reason"] == []
    assert all(b.kind in BAD_KINDS for b in report.bad)
    assert (report.fatal is not None) == empty_class
    json.dumps(report.to_dict())  # JSON-ready


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not block reading")
    path = tmp_path / "locked.png"
    Image.new("RGB", (20, 20)).save(path)
    path.chmod(0)
    try:
        bad = inspect_file(path).bad
    finally:
        path.chmod(0o644)
    assert bad is not None and bad.kind == "unreadable" and "permission" in bad.reason


def test_max_pixels_and_min_size_are_settings(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", n=3, size=(40, 32))
    bombs = audit_folder(data, max_pixels=1000, workers=1)
    assert {b.kind for b in bombs.bad} == {"too_large"}
    assert len(bombs.bad) == 6 and "max_pixels" in bombs.bad[0].reason
    small = audit_folder(data, min_size=33, workers=1)
    assert {b.kind for b in small.bad} == {"too_small"}
    assert audit_folder(data, min_size=32, workers=1).bad == []


def test_clean_splits_bad_fraction_and_problems(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", n=5)
    broken = data / "cat" / "cat_000.png"
    broken.write_bytes(broken.read_bytes()[:60])
    splits = load_splits(data, val_fraction=0.2)
    report = audit_splits(splits, workers=2)
    assert [b.path for b in report.bad] == [str(broken)]
    assert report.bad_fraction == pytest.approx(0.1)
    clean = report.clean_splits()
    assert sum(map(len, (clean.train, clean.val))) == 9
    assert str(broken) not in {s.path for s in clean.train + clean.val}
    assert report.problems(max_bad_fraction=0.1) == []
    assert "max-bad-fraction" in report.problems(max_bad_fraction=0.05)[0]
    with pytest.raises(DataError, match="cannot be used"):
        report.raise_if_unusable(0.05)


def test_class_emptied_by_bad_files_is_unusable(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog", "fox"), n=3)
    for path in (data / "fox").iterdir():
        path.write_bytes(b"")
    report = audit_folder(data, workers=2)
    assert report.fatal is None
    assert any("fox" in p and "no usable training images" in p for p in report.problems())


def test_imbalance_duplicates_and_flat_leaks(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("big", "small"), n=1)
    make_image_folder(tmp_path / "more", classes=("big",), n=24, size=(41, 33))
    for path in (tmp_path / "more" / "big").iterdir():
        path.rename(data / "big" / f"x_{path.name}")
    original = data / "small" / "small_000.png"
    (data / "small" / "copy.png").write_bytes(original.read_bytes())  # one lands in val
    report = audit_folder(data, workers=2)
    assert report.to_dict()["counts"]["train"] == {"big": 20, "small": 1}
    assert any("imbalanced" in w for w in report.warnings)
    assert len(report.duplicates) == 1 and len(report.duplicates[0]) == 2
    assert len(report.leaks) == 1 and report.leaks[0].split == "val"


def test_threads_give_the_same_report(tmp_path: Path) -> None:
    bench = _corpus_module()
    corpus = bench.build_corpus(tmp_path / "data", empty_class=False)
    one = audit_folder(corpus.root, workers=1).to_dict()
    four = audit_folder(corpus.root, workers=4).to_dict()
    one.pop("seconds"), four.pop("seconds")
    assert one == four


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        audit_folder(tmp_path / "nope")


def test_dataset_substitutes_a_file_broken_after_the_scan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_image_folder(tmp_path / "data", classes=("cat",), n=4)
    samples = [Sample(str(p), 0) for p in sorted((data / "cat").iterdir())]
    dataset = ImageDataset(samples, transform=lambda image: image.tobytes())
    first, second = samples[0].path, samples[1].path
    Path(first).unlink()  # deleted mid-run
    Path(second).write_bytes(Path(second).read_bytes()[:50])  # truncated mid-run
    expected = dataset[2]
    assert dataset[0] == expected and dataset[1] == expected  # the next index that decodes
    assert dataset[0] == expected  # the same substitute every time
    assert set(dataset.failures) == {first, second}
    assert "no such file" in dataset.failures[first]
    assert sum(first in r.getMessage() for r in caplog.records) == 1  # logged once
    for sample in dataset.samples:
        Path(sample.path).unlink(missing_ok=True)
    with pytest.raises(DataError, match="can be read"):
        dataset[0]
