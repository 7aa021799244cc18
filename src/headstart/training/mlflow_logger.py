"""Optional MLflow tracking of a run (the ``mlflow`` extra; mlflow-skinny is enough).

One MLflow run per headstart run: the settings as params (once), every epoch's metrics at
step = epoch, the notes as ``note.NNN`` tags, and at the end the best and test metrics, the report
folder and the model's ``headstart.json`` as artifacts. The client API is used, not the fluent
one, so a user's own active MLflow run is left alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from headstart.errors import ConfigError
from headstart.training.callbacks import Callback, RunEnd, end_values, missing_extra, numbers

__all__ = ["MlflowLogger"]

_MAX_TAG = 5000
"""Tag values MLflow stores (longer notes are cut)."""


class MlflowLogger(Callback):
    """Logs to an MLflow run at ``uri`` in ``experiment``; a context manager ends the run.

    Args:
        uri: Tracking URI: a server (``http://...``), a file store (``file:///...`` or a path).
        experiment: Experiment name (created when missing).
        run_name: The MLflow run's name (the run folder's name).
        params: The run's settings, logged once, when the MLflow run is new.
        run_id: An MLflow run to continue (a resumed headstart run); a new one is started when
            the store does not have it.

    Raises:
        ConfigError: mlflow is not installed, or the store cannot be reached or written.
    """

    def __init__(
        self,
        *,
        uri: str,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        run_id: str | None = None,
    ) -> None:
        if urlparse(uri).scheme in ("", "file"):
            # MLflow 3 keeps the file store only for those who opt in; a local store is our default
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing_extra("mlflow", "--tracker mlflow") from None
        try:
            self._client = MlflowClient(tracking_uri=uri)
            found = self._client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self._client.create_experiment(
                experiment
            )  # fmt: skip
            self.resumed = run_id is not None and self._continue(run_id, experiment_id)
            if not self.resumed:
                run_id = self._start(experiment_id, run_name, params)
        except Exception as exc:  # every store raises its own kinds; all mean the same to a user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"cannot start an MLflow run in experiment {experiment!r} at {uri}: {first}; "
                "check --mlflow-uri (or MLFLOW_TRACKING_URI)."
            ) from None
        self.run_id: str = str(run_id)
        self.uri = uri
        self._notes = self._noted() if self.resumed else 0

    def _continue(self, run_id: str, experiment_id: str) -> bool:
        """Reopen ``run_id`` if this store holds it in this experiment."""
        try:
            run = self._client.get_run(run_id)
        except Exception:  # not in this store: a new run starts
            return False
        if run.info.experiment_id != experiment_id:
            return False
        self._client.update_run(run_id, status="RUNNING")
        return True

    def _start(self, experiment_id: str, run_name: str, params: Mapping[str, Any]) -> str:
        from mlflow.entities import Param

        run = self._client.create_run(
            experiment_id, run_name=run_name, tags={"mlflow.source.name": "headstart"}
        )
        values = [Param(key, "" if value is None else str(value)) for key, value in params.items()]
        self._client.log_batch(run.info.run_id, params=values)
        return str(run.info.run_id)

    def _noted(self) -> int:
        """How many notes the continued run holds already (new ones are numbered after them)."""
        tags = self._client.get_run(self.run_id).data.tags
        return sum(1 for key in tags if key.startswith("note."))

    def _log(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        self._client.log_batch(self.run_id, metrics=metrics)

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        """The epoch's metrics at step = epoch number."""
        self._log(numbers(row), int(row["epoch"]))
        if row.get("phase"):
            self._client.set_tag(self.run_id, "phase", str(row["phase"]))

    def on_note(self, message: str) -> None:
        self._notes += 1
        self._client.set_tag(self.run_id, f"note.{self._notes:03d}", message[:_MAX_TAG])

    def on_run_end(self, end: RunEnd) -> None:
        """Best and test metrics, the report folder and the model's record as artifacts."""
        from headstart.artifact import META_FILE

        self._log(end_values(end), end.best_epoch)
        self._client.set_tag(self.run_id, "model_dir", str(Path(end.model_dir).resolve()))
        if end.report_dir is not None and Path(end.report_dir).is_dir():
            self._client.log_artifacts(self.run_id, str(end.report_dir), "report")
        meta = Path(end.model_dir) / META_FILE
        if meta.is_file():
            self._client.log_artifact(self.run_id, str(meta), "model")

    def __enter__(self) -> MlflowLogger:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        """End the run: FINISHED, KILLED after an interruption, FAILED after an error."""
        from headstart.training.signals import TrainingInterrupted

        status = "FINISHED"
        if kind is not None:
            stopped = issubclass(kind, (KeyboardInterrupt, TrainingInterrupted))
            status = "KILLED" if stopped else "FAILED"
        self._client.set_terminated(self.run_id, status)
