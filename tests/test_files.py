"""The one atomic write: content kinds, file modes, the kept previous file, leftovers swept."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from headstart import files
from headstart.errors import ConfigError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_bytes_and_writer_function(tmp_path: Path) -> None:
    files.atomic_write(tmp_path / "a.txt", "héllo\n")
    files.atomic_write(tmp_path / "b.bin", b"\x00\x01")
    files.atomic_write(tmp_path / "deep" / "c.bin", lambda handle: handle.write(b"xyz"))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "deep" / "c.bin").read_bytes() == b"xyz"
    assert not list(tmp_path.rglob("*.tmp"))


def test_files_are_0644_and_made_folders_0755_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.atomic_write(tmp_path / "run" / "model" / "model.safetensors", b"w")
        made = files.make_dirs(tmp_path / "other" / "nested")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "run" / "model" / "model.safetensors") == 0o644
    for folder in (tmp_path / "run", tmp_path / "run" / "model", made, made.parent):
        assert _mode(folder) == 0o755, folder


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    files.atomic_write(path, "old")

    def broken(handle) -> None:  # noqa: ANN001
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_keep_previous_and_sweep(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    files.atomic_write(path, b"1", keep_previous=True)
    files.atomic_write(path, b"2", keep_previous=True)
    assert path.read_bytes() == b"2"
    assert files.previous_path(path).read_bytes() == b"1"
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"")
    assert [p.name for p in files.sweep_temporaries(tmp_path)] == [".last.pt.abc.tmp"]
    assert {p.name for p in tmp_path.iterdir()} == {"last.pt", "last.prev.pt"}


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "c"))
    assert files.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HEADSTART_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir() == tmp_path / "xdg" / "headstart"


def test_marked_folders_are_told_from_user_folders(tmp_path: Path) -> None:
    run = files.mark_folder(tmp_path / "runs" / "run", "run")
    assert files.folder_kind(run) == "run" and _mode(run / files.MARKER) == 0o644
    assert files.folder_kind(tmp_path) is None
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / files.MARKER).write_text("not json")  # a user's own dot-file
    assert files.folder_kind(tmp_path / "fake") is None


def test_outputs_are_refused_inside_the_data(tmp_path: Path) -> None:
    data = tmp_path / "photos"
    (data / "cat").mkdir(parents=True)
    (tmp_path / "link").symlink_to(data)
    for inside in (data, data / "runs" / "run", tmp_path / "link" / "cat" / "x.json"):
        with pytest.raises(ConfigError, match="inside the data folder"):
            files.refuse_inside(inside, data)
    files.refuse_inside(tmp_path / "photos-runs", data)  # a sibling whose name starts alike
    assert not files.is_within(tmp_path / "photos2", data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("500MB", 500 * 10**6), ("2G", 2 * 1024**3), ("10GiB", 10 * 1024**3),
     ("1.5 kb", 1500), ("7", 7)],
)  # fmt: skip
def test_sizes_are_read_in_decimal_and_binary_units(text: str, expected: int) -> None:
    from headstart.files import parse_size

    assert parse_size(text) == expected


def test_the_cache_budget_comes_from_the_setting_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from headstart.errors import ConfigError
    from headstart.files import DEFAULT_CACHE_BUDGET, cache_budget, parse_size

    monkeypatch.delenv("HEADSTART_CACHE_BUDGET", raising=False)
    assert cache_budget() == parse_size(DEFAULT_CACHE_BUDGET)
    monkeypatch.setenv("HEADSTART_CACHE_BUDGET", "3MB")
    assert cache_budget() == 3 * 10**6 and cache_budget("1K") == 1024
    with pytest.raises(ConfigError, match=r"--cache-budget '10 parsecs' is not a size; .*10GiB"):
        cache_budget("10 parsecs")
    monkeypatch.setenv("HEADSTART_CACHE_BUDGET", "lots")
    with pytest.raises(ConfigError, match="HEADSTART_CACHE_BUDGET 'lots' is not a size"):
        cache_budget()
