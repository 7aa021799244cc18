"""One read of each file, in worker processes: the same inspections and squares as in one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headstart.data.audit.read_pass import read_files
from headstart.data.image_store import SquareSpec, StoreWriter
from headstart.progress import reporting
from tests.conftest import write_image


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    paths = [
        str(write_image(tmp_path / "d" / f"{i:03d}.png", (40 * (i % 6), 9, 9), (20 + i % 7, 9), i))
        for i in range(90)
    ]  # fmt: skip
    Path(paths[5]).write_bytes(b"not an image")
    Path(paths[40]).write_bytes(Path(paths[40]).read_bytes()[:70])  # truncated
    return paths


def _read(files: list[str], root: Path, workers: int):
    writer = StoreWriter.create(root, files, SquareSpec(16), budget_bytes=10**9)
    assert writer is not None
    heard: list[int] = []
    with reporting(lambda task, done, total: heard.append(done)):
        found = read_files(
            files, max_pixels=10**8, min_size=8, audit=[i % 3 != 0 for i in range(len(files))],
            store=writer, workers=workers,
        )  # fmt: skip
    assert heard[-1] == len(files)
    return found, writer.finish()


def test_processes_read_what_one_process_reads(files: list[str], tmp_path: Path) -> None:
    one, alone = _read(files, tmp_path / "one", workers=1)
    two, shared = _read(files, tmp_path / "two", workers=2)
    assert one == two  # the same inspections, in the same order
    assert [f is None for f in one] == [i % 3 == 0 for i in range(len(files))]
    assert one[40] is not None and one[40].bad is not None and one[40].bad.kind == "truncated"
    assert np.array_equal(np.asarray(alone.pixels), np.asarray(shared.pixels))
    assert np.array_equal(alone.geometry, shared.geometry)
    assert alone.failures == shared.failures and sorted(alone.failures) == [files[5], files[40]]
    assert "not a supported image format" in shared.failures[files[5]]
    assert int(np.asarray(shared.pixels)[1].max()) > 0 and not np.asarray(shared.pixels)[5].any()


def test_without_a_store_only_the_audited_files_are_read(files: list[str]) -> None:
    audit = [i < 10 for i in range(len(files))]
    found = read_files(files, max_pixels=10**8, min_size=8, audit=audit, workers=2)
    assert [f is not None for f in found] == audit


def test_a_stop_in_the_middle_reaches_the_caller(files: list[str]) -> None:
    def stop(task: str, done: int, total: int) -> None:
        raise KeyboardInterrupt  # as Ctrl-C does, at the first chunk back

    with reporting(stop), pytest.raises(KeyboardInterrupt):
        read_files(files, max_pixels=10**8, min_size=8, audit=[True] * len(files), workers=2)


def test_calls_from_two_threads_at_once_keep_their_own_stores(
    files: list[str], tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def fill(name: str):
        return _read(files, tmp_path / name, workers=1)[1]  # in threads of this process

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(fill, ["a", "b"])
    alone = _read(files, tmp_path / "alone", workers=1)[1]
    for filled in (first, second):
        assert np.array_equal(np.asarray(filled.pixels), np.asarray(alone.pixels))
        assert np.array_equal(filled.geometry, alone.geometry)


def test_an_interrupted_fill_leaves_no_entry_behind(files: list[str], tmp_path: Path) -> None:
    from headstart.data.audit import audit_splits
    from headstart.data.folders import DataSplits, Sample

    splits = DataSplits(("a",), tuple(Sample(p, 0) for p in files), (), (), {})

    def stop(task: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    with reporting(stop), pytest.raises(KeyboardInterrupt):
        audit_splits(splits, squares=SquareSpec(16), store_root=tmp_path / "c", workers=2)
    assert not [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
