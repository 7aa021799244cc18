"""WandbLogger in offline mode (no network): the offline run file holds what was logged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from headstart.training.callbacks import RunEnd
from tests.trackers_helpers import need_extra, offline_wandb, wandb_run

need_extra("wandb")

from headstart.training.wandb_logger import WandbLogger  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline_wandb(monkeypatch, tmp_path / "home")


def test_epochs_notes_and_the_summary_are_in_the_offline_run(tmp_path: Path) -> None:
    params = {"lr": 0.01, "model": "timm:test_resnet"}
    with WandbLogger(project="tests", run_name="run", params=params, folder=tmp_path) as logger:
        logger.on_note("recipe: two-phase")
        logger.on_epoch_end({"epoch": 1, "phase": "head", "train_loss": 1.5, "val_acc": 0.5})
        logger.on_epoch_end({"epoch": 2, "phase": "full", "train_loss": 0.5, "val_acc": 0.75})
        logger.on_run_end(RunEnd(2, {"val_acc": 0.75}, {"acc": 0.5}, tmp_path / "model", None))
    assert logger.offline and Path(logger.where).parent == tmp_path / "wandb"
    run = wandb_run(tmp_path / "wandb")
    assert run["ids"] == {logger.run_id}
    rows = [(r["_step"], r["epoch"], r["train_loss"], r["phase"]) for r in run["history"]]
    assert rows == [(1, 1, 1.5, "head"), (2, 2, 0.5, "full")]
    assert run["summary"]["test_acc"] == 0.5 and run["summary"]["best_epoch"] == 2
    assert run["summary"]["model_dir"] == str((tmp_path / "model").resolve())
    assert run["notes"] == "recipe: two-phase"
    assert run["config"]["model"] == "timm:test_resnet"


def test_a_resumed_run_keeps_its_wandb_id(tmp_path: Path) -> None:
    with WandbLogger(project="tests", run_name="run", params={}, folder=tmp_path) as first:
        first.on_epoch_end({"epoch": 1, "val_acc": 0.5})
    # W&B names an offline run's folder by the second it starts and the run id: a resume within
    # the same second (never a real one) would share the first's folder and overwrite its file
    time.sleep(1.05 - time.time() % 1)
    with WandbLogger(project="tests", run_name="run", params={}, folder=tmp_path,
                     run_id=first.run_id) as again:  # fmt: skip
        again.on_epoch_end({"epoch": 2, "val_acc": 0.75})
    run = wandb_run(tmp_path / "wandb")
    assert again.run_id == first.run_id and run["ids"] == {first.run_id}
    assert [r["epoch"] for r in run["history"]] == [1, 2]
