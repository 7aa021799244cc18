"""TensorBoard logging writes real event files with the epoch metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.errors import ConfigError
from headstart.training.tensorboard import TensorBoardLogger


def test_epoch_rows_become_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorBoardLogger(tmp_path) as tb:
        tb.on_epoch_end({"epoch": 1, "phase": "head", "train_loss": 1.5, "val_acc": 0.5, "lr": 0.1})
        tb.on_epoch_end({"epoch": 2, "phase": "full", "train_loss": 0.5, "val_acc": 0.75})
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("loss/train")]
    assert loss == [(1, 1.5), (2, 0.5)]
    assert [e.value for e in events.Scalars("accuracy/val")] == [0.5, 0.75]


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name == "torch.utils.tensorboard":
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match=r"headstart\[tensorboard\]"):
        TensorBoardLogger(tmp_path)
