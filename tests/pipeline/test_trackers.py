"""A tiny training run logs to MLflow (a local file store) and W&B (offline), and resumes into the
same tracker runs; a missing extra fails before any work; a failing tracker never stops training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from headstart.config import TrainConfig
from headstart.errors import ConfigError
from headstart.pipeline import resume_run, train_run
from tests.e2e_helpers import TINY_MODEL, tiny_weights
from tests.pipeline.test_run import Crash, CrashAt
from tests.pipeline.test_run import _config as run_config
from tests.trackers_helpers import need_extra, offline_wandb, wandb_run


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("trackers")
    folder = make_image_folder(root / "data", ("a", "b"), n=6, layout="split", n_test=2)
    return folder, tiny_weights(root)


def _config(data: tuple[Path, Path], out: Path, **overrides) -> TrainConfig:
    return run_config(*data, out, **overrides)  # the tiny two-phase run of test_run


def test_a_run_logs_to_mlflow_and_wandb_and_resumes_into_the_same_runs(
    data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_extra("mlflow")
    need_extra("wandb")
    from mlflow.tracking import MlflowClient

    offline_wandb(monkeypatch, tmp_path / "home")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _config(data, tmp_path / "runs" / "run", tracker="mlflow,wandb")
    with pytest.raises(Crash):  # killed at the first step of the full phase, after epoch 1
        train_run(config, {"out": "cli"}, callbacks=[CrashAt()])
    result = resume_run(tmp_path / "runs" / "run")
    assert result.test_metrics is not None

    uri = (tmp_path / "runs" / "mlruns").as_uri()  # the default store, beside the run folder
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "headstart"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["model"] == TINY_MODEL and run.data.params["tracker"] == "mlflow,wandb"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == [r["val_acc"] for r in result.history]
    assert run.data.metrics["test_acc"] == result.test_metrics["acc"]
    notes = list(run.data.tags.values())
    assert any(n.startswith("recipe: two-phase") for n in notes)
    assert any(n.startswith("resuming the run in") for n in notes)
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "report")]
    assert "report/report.html" in artifacts

    logged = wandb_run(tmp_path / "runs" / "run" / "wandb")
    assert len(logged["ids"]) == 1  # the resumed process continued the same W&B run
    assert [r["epoch"] for r in logged["history"]] == [1, 2, 3]
    assert [r["val_acc"] for r in logged["history"]] == [r["val_acc"] for r in result.history]
    assert logged["summary"]["test_acc"] == result.test_metrics["acc"]
    assert "recipe: two-phase" in logged["notes"]


def test_a_missing_extra_fails_before_the_data_is_read(tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    config = TrainConfig(data=str(tmp_path / "no-such-folder"), tracker="wandb",
                         out=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"--tracker wandb needs the wandb package; install it "
                       r"with `pip install 'headstart\[wandb\]'` \(or `uv sync --extra wandb`\)"):
        train_run(config)  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_failing_tracker_leaves_a_warning_and_the_run_finishes(data, tmp_path: Path, monkeypatch):
    need_extra("mlflow")
    from headstart.training.mlflow_logger import MlflowLogger

    def broken(self, row) -> None:
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowLogger, "on_epoch_end", broken)
    config = _config(data, tmp_path / "run", tracker="mlflow",
                     mlflow_uri=(tmp_path / "store").as_uri())  # fmt: skip
    result = train_run(config, {"out": "cli"})
    assert len(result.history) == 3 and (result.model_dir / "model.safetensors").is_file()
    warning = ("mlflow logging failed (ConnectionError: tracking server went away); training goes "
               "on without mlflow")  # fmt: skip
    assert result.notes.count(warning) == 1
    assert any(n.startswith("mlflow: logging to run ") for n in result.notes)
