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

from headstart.data.audit import BAD_KINDS, audit_folder, audit_splits, inspect_file
from headstart.data.audit import audit as scan
from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample, load_splits
from headstart.errors import DataError
from tests.conftest import make_image_folder

_BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "reliability_corpus.py"


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


# ----------------------------------------------------------------------------- the audit cache


@pytest.fixture
def count_inspections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """An own audit cache folder, and the list of paths ``inspect_file`` reads (in any order)."""
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    real = scan.inspect_file

    def counting(path: str | Path, **kwargs: int) -> scan.FileCheck:
        calls.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(scan, "inspect_file", counting)
    return calls


def _report(data: Path, *, workers: int = 1, **kwargs: object) -> dict[str, object]:
    found = audit_folder(data, workers=workers, **kwargs).to_dict()  # type: ignore[arg-type]
    found.pop("seconds")
    return found


def test_unchanged_files_are_not_read_again(tmp_path: Path, count_inspections: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", n=4)
    first = _report(data)
    assert len(count_inspections) == 8
    count_inspections.clear()
    assert _report(data) == first
    assert count_inspections == []
    assert list((tmp_path / "cache" / "audit").glob("*.json"))  # one file per root and settings
    _report(data, min_size=9)  # other settings: every file is read again
    assert len(count_inspections) == 8


def test_edited_files_are_read_again(tmp_path: Path, count_inspections: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", n=4)
    _report(data)
    truncated, touched = data / "cat" / "cat_000.png", data / "dog" / "dog_001.png"
    truncated.write_bytes(truncated.read_bytes()[:60])  # new size
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))  # same bytes, new mtime
    count_inspections.clear()
    report = _report(data)
    assert sorted(count_inspections) == [str(truncated), str(touched)]
    assert [(b["path"], b["kind"]) for b in report["bad"]] == [(str(truncated), "truncated")]


def test_bad_files_stay_bad_from_the_cache(tmp_path: Path, count_inspections: list[str]) -> None:
    bench = _corpus_module()
    corpus = bench.build_corpus(tmp_path / "data", empty_class=False)
    before = bench.snapshot(corpus.root)
    uncached = _report(corpus.root, use_cache=False, workers=4)
    assert not (tmp_path / "cache" / "audit").exists()  # use_cache=False leaves the cache alone
    cold = _report(corpus.root)
    count_inspections.clear()
    warm = _report(corpus.root)
    assert uncached == cold == warm
    assert bench.snapshot(corpus.root) == before
    # only files that could not be read (no content hash to keep) are inspected again
    unread = {"unreadable", "missing", "broken_symlink", "symlink_loop"}
    assert {b["kind"] for b in warm["bad"] if b["path"] in count_inspections} <= unread
    assert len(count_inspections) < len(warm["bad"]) < warm["num_samples"]


def test_corrupt_cache_is_ignored(
    tmp_path: Path, count_inspections: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    data = make_image_folder(tmp_path / "data", n=3)
    first = _report(data)
    (cache_file,) = (tmp_path / "cache" / "audit").glob("*.json")
    for garbage in ("{not json", '{"format": "headstart-audit-cache"}', "[1, 2]", "\xff\xfe"):
        cache_file.write_text(garbage)
        count_inspections.clear()
        assert _report(data) == first
        assert len(count_inspections) == 6
        assert "ignoring the audit cache" in caplog.text
    doc = json.loads(cache_file.read_text())  # rewritten whole
    for entry in doc["files"].values():
        entry[4] = 123  # a digest that is not a string
    cache_file.write_text(json.dumps(doc))
    count_inspections.clear()
    assert _report(data) == first
    assert len(count_inspections) == 6


def test_audit_splits_caches_splits_from_any_root(
    tmp_path: Path, count_inspections: list[str]
) -> None:
    data = make_image_folder(tmp_path / "data", n=3, layout="split", n_val=1)
    splits = load_splits(data)
    first = audit_splits(splits, workers=2).to_dict()
    count_inspections.clear()
    second = audit_splits(splits, workers=2).to_dict()
    assert count_inspections == []
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_cifar10_is_audited_from_the_cache(
    tmp_path: Path, count_inspections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.data.test_cifar import _write_batches  # a tiny fake CIFAR-10, no download

    monkeypatch.chdir(tmp_path)  # no folder named cifar10 here
    _write_batches(tmp_path / "cache" / "datasets" / "cifar10" / "cifar-10-batches-bin")
    splits = load_splits("cifar10")
    assert splits.origin["layout"] == "cifar10"
    first = audit_splits(splits, workers=1).to_dict()
    assert len(count_inspections) == 60
    count_inspections.clear()
    second = audit_splits(splits, workers=1).to_dict()
    assert count_inspections == []
    first.pop("seconds"), second.pop("seconds")
    assert first == second and first["num_bad_samples"] == 0
