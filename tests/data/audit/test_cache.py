"""The audit cache: unchanged files are not read again, edited ones are, bad ones stay bad."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import ModuleType

import pytest

from headstart.data.audit import audit_folder, audit_splits, read_pass
from headstart.data.folders import load_splits
from tests.conftest import make_image_folder


@pytest.fixture
def count_inspections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """An own audit cache folder, and the list of paths ``read_file`` reads (in any order)."""
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    real = read_pass.read_file

    def counting(path: str, **kwargs: object) -> object:
        calls.append(str(path))
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(read_pass, "read_file", counting)
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


def test_cache_file_is_written_with_the_one_atomic_write(
    tmp_path: Path, count_inspections: list[str]
) -> None:
    _report(make_image_folder(tmp_path / "data", n=2))
    folder = tmp_path / "cache" / "audit"
    (cache_file,) = folder.iterdir()  # no temporary file left beside it
    assert cache_file.suffix == ".json" and stat.S_IMODE(cache_file.stat().st_mode) == 0o644
    assert json.loads(cache_file.read_text())["format"] == "headstart-audit-cache"


def test_edited_files_are_read_again(tmp_path: Path, count_inspections: list[str]) -> None:
    data = make_image_folder(tmp_path / "data", n=4)
    _report(data)
    truncated, touched = data / "cat" / "cat_000.png", data / "dog" / "dog_001.png"
    truncated.write_bytes(truncated.read_bytes()[:60])  # new size
    stat_ = touched.stat()
    os.utime(touched, ns=(stat_.st_atime_ns, stat_.st_mtime_ns - 10**9))  # same bytes, new mtime
    count_inspections.clear()
    report = _report(data)
    assert sorted(count_inspections) == [str(truncated), str(touched)]
    assert [(b["path"], b["kind"]) for b in report["bad"]] == [(str(truncated), "truncated")]


def test_bad_files_stay_bad_from_the_cache(
    tmp_path: Path, count_inspections: list[str], bench: ModuleType
) -> None:
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


def test_the_cache_folder_is_marked_and_never_audited_as_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.files import folder_kind

    data = make_image_folder(tmp_path / "data", n=2)
    cache = data / "cache"  # HEADSTART_CACHE inside the data folder
    monkeypatch.setenv("HEADSTART_CACHE", str(cache))
    first = audit_folder(data, workers=1)
    assert folder_kind(cache) == "cache"
    second = audit_folder(data, workers=1)
    assert second.written == [str(cache)] and second.splits.classes == first.splits.classes
    assert any("headstart wrote" in w for w in second.warnings)


def test_a_change_within_the_timestamp_granularity_is_caught_by_content(
    tmp_path: Path, count_inspections: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.data.audit import cache

    real = cache._stat_signature

    def coarse(path: str):  # a filesystem that keeps times to 2 s (FAT) and no usable ctime
        found = real(path)
        if found is None:
            return None
        size, mtime, _, inode = found
        return (size, mtime - mtime % 2_000_000_000, 0, inode)

    monkeypatch.setattr(cache, "_stat_signature", coarse)
    data = make_image_folder(tmp_path / "data", n=2)
    _report(data)
    edited = data / "cat" / "cat_000.png"
    before, damaged = edited.stat(), bytearray(edited.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one byte of the pixel data: same size, now corrupt
    edited.write_bytes(bytes(damaged))
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same time
    count_inspections.clear()
    report = _report(data)
    assert count_inspections == [str(edited)]  # read again: its bytes changed
    assert [b["path"] for b in report["bad"]] == [str(edited)]
