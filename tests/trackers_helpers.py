"""Helpers for the tracker tests: skips without an extra, W&B offline and quiet, its files read."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_BLOCK = 32 * 1024
"""The .wandb file is a LevelDB log: 32 KiB blocks of records, each behind a 7-byte header."""


def need_extra(extra: str) -> Any:
    """The extra's module, or skip the test saying what to install."""
    return pytest.importorskip(
        extra, reason=f"the {extra} extra is not installed (uv sync --extra {extra})"
    )


def offline_wandb(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No network, no prompt, no files outside ``home``: what every W&B test runs under."""
    for name, value in {
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
        "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"), "WANDB_DISABLE_CODE": "true",
        "WANDB_INIT_TIMEOUT": "60",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)


def _records(path: Path) -> Iterator[Any]:
    """The protobuf records of an offline run file, in order (wandb's own message types)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""  # 7: the file's ":W&B" header
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_run(folder: Path) -> dict[str, Any]:
    """What the offline runs under ``folder`` hold: ids, history rows, summary, notes, config."""
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    ids, notes, config = set(), "", {}
    for path in sorted(folder.rglob("run-*.wandb")):
        for record in _records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "summary":
                summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
            elif kind == "run":
                ids.add(record.run.run_id)
                notes = record.run.notes or notes
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    return {"ids": ids, "history": history, "summary": summary, "notes": notes, "config": config}


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)
