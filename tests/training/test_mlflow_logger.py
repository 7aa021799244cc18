"""MlflowLogger against a local MLflow file store, read back with MlflowClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.errors import ConfigError
from headstart.training.callbacks import RunEnd
from tests.trackers_helpers import need_extra

need_extra("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from headstart.training.mlflow_logger import MlflowLogger  # noqa: E402


def _logger(uri: str, run_id: str | None = None) -> MlflowLogger:
    params = {"lr": 0.01, "model": "timm:test_resnet", "image_size": None}
    return MlflowLogger(uri=uri, experiment="tests", run_name="run", params=params, run_id=run_id)


def test_epochs_notes_and_the_end_are_read_back(tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    end = RunEnd(2, {"val_acc": 0.75, "phase": "full"}, {"acc": 0.5, "num_images": 4},
                 tmp_path / "model", report)  # fmt: skip
    with _logger(uri) as logger:
        logger.on_note("recipe: two-phase")
        logger.on_epoch_end({"epoch": 1, "phase": "head", "train_loss": 1.5, "val_acc": 0.5,
                             "lr": 0.01, "ema": False})  # fmt: skip
        logger.on_epoch_end({"epoch": 2, "phase": "full", "train_loss": 0.5, "val_acc": 0.75})
        logger.on_run_end(end)
    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params == {"lr": "0.01", "model": "timm:test_resnet", "image_size": ""}
    history = client.get_metric_history(logger.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.5), (2, 0.5)]
    assert "ema" not in run.data.metrics and "epoch" not in run.data.metrics
    assert run.data.metrics["test_acc"] == 0.5 and run.data.metrics["best_epoch"] == 2
    assert run.data.tags["note.001"] == "recipe: two-phase"
    assert [a.path for a in client.list_artifacts(logger.run_id, "report")] == ["report/report.md"]


def test_a_resumed_run_continues_the_same_mlflow_run(tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    with pytest.raises(KeyboardInterrupt), _logger(uri) as first:
        first.on_note("one")
        first.on_epoch_end({"epoch": 1, "val_acc": 0.5})
        raise KeyboardInterrupt
    assert MlflowClient(uri).get_run(first.run_id).info.status == "KILLED"
    with _logger(uri, run_id=first.run_id) as again:
        again.on_note("two")
        again.on_epoch_end({"epoch": 2, "val_acc": 0.75})
    assert again.resumed and again.run_id == first.run_id
    run = MlflowClient(uri).get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert (run.data.tags["note.001"], run.data.tags["note.002"]) == ("one", "two")
    steps = [m.step for m in MlflowClient(uri).get_metric_history(first.run_id, "val_acc")]
    assert steps == [1, 2]
    other = _logger((tmp_path / "elsewhere").as_uri(), run_id=first.run_id)
    assert not other.resumed and other.run_id != first.run_id  # another store: a new run


def test_a_store_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot start an MLflow run .* check --mlflow-uri") as e:
        _logger((blocker / "mlruns").as_uri())
    assert "\n" not in str(e.value)
