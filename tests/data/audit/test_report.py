"""The audit report: bad files dropped from the splits, the bad fraction, problems, saving."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from headstart.data.audit import audit_folder, audit_splits
from headstart.data.folders import load_splits
from headstart.errors import DataError
from tests.conftest import make_image_folder


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


def test_save_writes_the_json_atomically(tmp_path: Path) -> None:
    report = audit_folder(make_image_folder(tmp_path / "data", n=2), workers=1)
    out = report.save(tmp_path / "new" / "report.json")  # missing folders are created
    assert json.loads(out.read_text()) == report.to_dict()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.json"]  # no temporary left
