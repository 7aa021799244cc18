"""Inspecting files: a reason for every unusable file, the size limits, threads."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from headstart.data.audit import audit_folder, inspect_file
from headstart.data.audit.read_pass import read_files
from tests.conftest import make_image_folder


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


def test_any_number_of_workers_gives_the_same_results(tmp_path: Path, bench: ModuleType) -> None:
    corpus = bench.build_corpus(tmp_path / "data", empty_class=False)
    paths = sorted(p for p in corpus.good + list(corpus.bad) if not os.path.isdir(p))
    audit = [True] * len(paths)
    one = read_files(paths, max_pixels=10**8, min_size=8, audit=audit, workers=1)
    four = read_files(paths, max_pixels=10**8, min_size=8, audit=audit, workers=4)
    assert one == four
    one_report = audit_folder(corpus.root, workers=1, use_cache=False).to_dict()
    four_report = audit_folder(corpus.root, workers=4, use_cache=False).to_dict()
    one_report.pop("seconds"), four_report.pop("seconds")
    assert one_report == four_report


def test_thin_and_wide_images_are_too_thin(tmp_path: Path, bench: ModuleType) -> None:
    sizes = {"thin.png": (20_000, 1), "tall.png": (1, 20_000), "wide_17.png": (1700, 100)}
    for name, size in sizes.items():
        Image.new("RGB", size).save(tmp_path / name)
    (tmp_path / "strip.png").write_bytes(bench.png_gray(8_000_000, 8))  # 186 KB, 64 M pixels
    for name in [*sizes, "strip.png"]:
        bad = inspect_file(tmp_path / name).bad
        assert bad is not None and bad.kind == "too_thin", name
        assert "too thin or too wide" in bad.reason and "crop or pad" in bad.reason
    Image.new("RGB", (256, 16)).save(tmp_path / "banner.png")  # 16:1 is kept
    assert inspect_file(tmp_path / "banner.png").bad is None
