"""The run's metrics trackers (TensorBoard, MLflow, W&B): checked at the start, opened in one place.

``check_trackers`` runs before any work, so a missing extra fails in one line before the data is
read. ``open_trackers`` starts them when training starts, each behind ``callbacks.Guarded`` (a
tracker's error becomes a warning, never a stopped run), and keeps the MLflow / W&B run ids in
the run folder so that ``--resume`` logs to the same tracker runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import ExitStack

from headstart.config import TrainConfig
from headstart.pipeline.notes import Notes
from headstart.run_folder import RunFolder
from headstart.training.callbacks import Callback, Guarded, missing_extra

__all__ = ["check_trackers", "mlflow_uri", "open_trackers", "tracker_names"]

_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""The package each tracker needs, named as the extra that installs it."""


def tracker_names(config: TrainConfig) -> tuple[str, ...]:
    """The trackers a run logs to: those of ``tracker``, with ``tensorboard`` when that is on."""
    names = [name for name in config.tracker.split(",") if name]
    if config.tensorboard and "tensorboard" not in names:
        names.insert(0, "tensorboard")
    return tuple(names)


def check_trackers(config: TrainConfig) -> None:
    """Fail now, in one line, when a tracker's package is not installed (nothing is imported)."""
    for name in tracker_names(config):
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            flag = "--tensorboard" if name == "tensorboard" else f"--tracker {name}"
            raise missing_extra(name, flag)


def mlflow_uri(config: TrainConfig, run: RunFolder) -> str:
    """``--mlflow-uri``, else ``MLFLOW_TRACKING_URI``, else the file store beside the run folder."""
    return (
        config.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
        or run.mlflow_store.resolve().as_uri()
    )  # fmt: skip


def open_trackers(
    config: TrainConfig, run: RunFolder, notes: Notes, stack: ExitStack, *, enabled: bool = True
) -> list[Callback]:
    """Start the run's trackers; ``stack`` closes them. Each also hears the notes so far.

    Args:
        enabled: Whether this process logs. In a multi-process run only the global rank 0 does
            (pass ``fabric.is_global_zero``); the others get no trackers.
    """
    if not enabled:
        return []

    def warn(message: str) -> None:
        notes.add(message, level=logging.WARNING)

    opened: list[Callback] = []
    for name in tracker_names(config):
        tracker = stack.enter_context(Guarded(_open(name, config, run, notes), name, warn))
        notes.subscribe(tracker)
        opened.append(tracker)
    return opened


def _open(name: str, config: TrainConfig, run: RunFolder, notes: Notes) -> Callback:
    params, title = config.to_dict(), run.path.resolve().name
    if name == "tensorboard":
        from headstart.training.tensorboard import TensorBoardLogger

        return TensorBoardLogger(run.tensorboard_dir)
    if name == "mlflow":
        from headstart.training.mlflow_logger import MlflowLogger

        uri, saved = mlflow_uri(config, run), run.tracker_run("mlflow")
        mlflow = MlflowLogger(
            uri=uri, experiment=config.mlflow_experiment, run_name=title, params=params,
            run_id=saved.get("run_id") if saved.get("uri") == uri else None,
        )  # fmt: skip
        run.save_tracker_run("mlflow", {"run_id": mlflow.run_id, "uri": uri})
        how = "continuing" if mlflow.resumed else "logging to"
        notes.add(f"mlflow: {how} run {mlflow.run_id} of experiment "
                  f"{config.mlflow_experiment!r} at {uri}")  # fmt: skip
        return mlflow
    from headstart.training.wandb_logger import WandbLogger

    wandb = WandbLogger(
        project=config.wandb_project, run_name=title, params=params, mode=config.wandb_mode,
        folder=None if os.environ.get("WANDB_DIR") else run.path,
        run_id=run.tracker_run("wandb").get("run_id"),
    )  # fmt: skip
    run.save_tracker_run("wandb", {"run_id": wandb.run_id})
    sync = f" (send it with `wandb sync {wandb.where}`)" if wandb.offline else ""
    notes.add(f"wandb: run {wandb.run_id} of project {config.wandb_project!r}: {wandb.where}{sync}")
    return wandb
