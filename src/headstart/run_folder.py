"""``RunFolder``: every path and file of a run folder (``runs/<name>/``), read and written here.

A run folder holds::

    config.yaml          the effective settings and where each came from
    splits.json          the exact train / val / test files
    data_report.json     the data audit (and files that broke during the run)
    metrics.csv          one row per epoch (HISTORY_COLUMNS)
    lr.csv               the learning rates as they ran, per step (LR_COLUMNS)
    checkpoints/         last.pt (+ last.prev.pt) and best.pt, for exact resume
    model/               the trained model (see headstart.artifact)
    report/              the evaluation report; eval/ holds later `headstart evaluate` reports
    tensorboard/         TensorBoard events, with --tensorboard
    trackers.json        the MLflow / W&B runs this run logs to, which a resume continues
    lr_find.png          the learning-rate sweep, with --lr auto

No other module spells these names. Every file is written atomically (``files.atomic_write``), and
the folder is marked (``files.mark_folder``) so that no walk of a data folder takes it in as images.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from headstart.config import TrainConfig, config_text, parse_config_text
from headstart.data.folders import DataSplits, read_splits, splits_json
from headstart.errors import ConfigError
from headstart.files import (
    atomic_write,
    mark_folder,
    previous_path,
    sweep_temporaries,
)

__all__ = ["HISTORY_COLUMNS", "LR_COLUMNS", "RUN_KIND", "RunFolder"]

HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_f1",
    "lr",
    "seconds",
    "images_per_s",
)
"""Columns of metrics.csv; ``lr`` is the head's learning rate at the epoch's first step and
``val_loss`` is plain cross-entropy (no label smoothing)."""

RUN_KIND = "run"
"""The kind of the marker a run folder carries."""
LR_COLUMNS = ("step", "epoch", "phase", "head_lr", "body_lr")
"""Columns of lr.csv: the global step (from 1), the epoch and phase it belongs to, the head's and
the last body stage's learning rate at that step (``body_lr`` empty while the body is frozen)."""

_CONFIG = "config.yaml"
_SPLITS = "splits.json"
_DATA_REPORT = "data_report.json"
_METRICS = "metrics.csv"
_LR = "lr.csv"
_CHECKPOINTS = "checkpoints"
_MODEL = "model"
_TRACKERS = "trackers.json"


@dataclass(frozen=True)
class RunFolder:
    """The files of one run, under ``path``."""

    path: Path

    SPLITS: ClassVar[str] = _SPLITS
    DATA_REPORT: ClassVar[str] = _DATA_REPORT
    """File names, for messages that point the user at a run's files."""

    # ------------------------------------------------------------------------- finding one

    @classmethod
    def create(cls, out: str | Path, *, explicit: bool) -> tuple[RunFolder, str | None]:
        """Make the folder of a new run: a taken default name gets a suffix, a taken --out errors.

        Returns:
            The run folder (created, mode 0755, marked) and a note when its name was changed.

        Raises:
            ConfigError: ``explicit`` and ``out`` exists and is not empty (an unfinished run there
                is pointed at ``--resume``), or the folder cannot be written.
        """
        path = Path(out)
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            return cls._made(path), None
        if explicit:
            run = cls(path)
            if run.is_run() and run.has_checkpoint() and not run.model_dir.exists():
                raise ConfigError(
                    f"{path} holds a run that did not finish; continue it with `headstart train "
                    f"--resume {path}`, or choose another --out."
                )
            raise ConfigError(
                f"run folder {path} already exists and is not empty; choose another --out "
                "(headstart never overwrites a run or your files)."
            )
        n = 2
        while Path(f"{path}-{n}").exists():
            n += 1
        new = Path(f"{path}-{n}")
        return cls._made(new), f"{path} exists; writing this run to {new}"

    @classmethod
    def _made(cls, path: Path) -> RunFolder:
        """Create and mark the folder, or say in one line why it cannot be written."""
        try:
            return cls(mark_folder(path, RUN_KIND))
        except OSError as exc:
            raise ConfigError(
                f"cannot write the run folder {path}: {exc.strerror or exc}; choose a writable "
                "--out."
            ) from None

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder (one with ``config.yaml`` and ``splits.json``).

        Raises:
            ConfigError: ``path`` is not a run folder.
        """
        run = cls(Path(path))
        if not run.is_run():
            raise ConfigError(
                f"{path} is not a headstart run folder (no {_CONFIG} / {_SPLITS}); pass the "
                "folder that `headstart train` wrote, e.g. runs/run."
            )
        return run

    @classmethod
    def holding(cls, path: str | Path) -> RunFolder | None:
        """The run folder that ``path`` is, or whose ``model/`` folder ``path`` is; else None."""
        path = Path(path)
        for candidate in (path, path.parent if path.name == _MODEL else None):
            if candidate is not None and cls(candidate).is_run():
                return cls(candidate)
        return None

    def is_run(self) -> bool:
        """Whether the folder holds a run's settings and splits."""
        return self.config_file.is_file() and self.splits_file.is_file()

    # ------------------------------------------------------------------------- paths

    @property
    def config_file(self) -> Path:
        return self.path / _CONFIG

    @property
    def splits_file(self) -> Path:
        return self.path / _SPLITS

    @property
    def data_report_file(self) -> Path:
        return self.path / _DATA_REPORT

    @property
    def metrics_file(self) -> Path:
        return self.path / _METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / _CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        """``checkpoints/last.pt``: everything an exact resume needs."""
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        """``checkpoints/best.pt``: the best epoch's weights and metrics."""
        return self.checkpoints / "best.pt"

    @property
    def model_dir(self) -> Path:
        return self.path / _MODEL

    @property
    def report_dir(self) -> Path:
        """The report written at the end of training."""
        return self.path / "report"

    @property
    def eval_dir(self) -> Path:
        """The default folder of `headstart evaluate` reports of this run's model."""
        return self.path / "eval"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def mlflow_store(self) -> Path:
        """The default MLflow file store, ``mlruns/`` beside the run folder."""
        return self.path.parent / "mlruns"

    @property
    def lr_find_plot(self) -> Path:
        """The learning-rate sweep's curve, for ``--lr auto``."""
        return self.path / "lr_find.png"

    # ------------------------------------------------------------------------- settings

    def save_config(self, config: TrainConfig, origin: dict[str, str]) -> None:
        """Write the effective settings and where each came from."""
        atomic_write(self.config_file, config_text(config, origin))

    def load_config(self, **overrides: Any) -> tuple[TrainConfig, dict[str, str]]:
        """The run's settings, with ``overrides`` applied (and marked as from the CLI)."""
        try:
            text = self.config_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {self.config_file}: {exc}") from None
        return parse_config_text(text, str(self.config_file), **overrides)

    def read_config_doc(self) -> dict[str, Any] | None:
        """The content of ``config.yaml`` for reports (None if missing or unreadable)."""
        try:
            doc = yaml.safe_load(self.config_file.read_text())
        except (OSError, yaml.YAMLError):
            return None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------------------- data

    def save_splits(self, splits: DataSplits) -> None:
        atomic_write(self.splits_file, splits_json(splits))

    def read_splits(self) -> DataSplits:
        return read_splits(self.splits_file)

    def save_data_report(self, doc: Mapping[str, Any]) -> None:
        """Write the data audit (``AuditReport.to_dict()``)."""
        atomic_write(self.data_report_file, json.dumps(doc, indent=1))

    def skipped_files(self, kinds: Collection[str] | None = None) -> list[tuple[str, str]]:
        """The files the audit left out, with reasons (none if the report is missing); only
        those of ``kinds`` when given."""
        try:
            bad = json.loads(self.data_report_file.read_text()).get("bad", [])
        except (OSError, ValueError, AttributeError):
            return []
        return [
            (str(b["path"]), str(b["reason"]))
            for b in bad
            if kinds is None or b.get("kind") in kinds
        ]

    def add_run_failures(self, failed: Mapping[str, str]) -> None:
        """Add the files that broke during training (path -> reason) to the data report."""
        doc = json.loads(self.data_report_file.read_text())
        doc["failed_during_run"] = [{"path": p, "reason": r} for p, r in sorted(failed.items())]
        self.save_data_report(doc)

    # ------------------------------------------------------------------------- history

    def write_history(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite the whole metrics.csv from the epoch rows."""
        atomic_write(self.metrics_file, _csv_text(HISTORY_COLUMNS, rows))

    def read_history(self) -> list[dict[str, str]]:
        """The rows of metrics.csv as dicts of strings (empty when the file is missing)."""
        return _read_csv(self.metrics_file)

    def write_lr_trace(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite lr.csv: the learning rates of every step so far (``LR_COLUMNS``)."""
        atomic_write(self.path / _LR, _csv_text(LR_COLUMNS, rows))

    def read_lr_trace(self) -> list[dict[str, str]]:
        """The rows of lr.csv as dicts of strings (empty when the file is missing)."""
        return _read_csv(self.path / _LR)

    # ------------------------------------------------------------------------- trackers

    def tracker_run(self, tracker: str) -> dict[str, str]:
        """What ``tracker`` (mlflow, wandb) saved about its run, e.g. its id (empty if nothing)."""
        try:
            entry = json.loads((self.path / _TRACKERS).read_text()).get(tracker)
        except (OSError, ValueError, AttributeError):
            return {}
        return {str(k): str(v) for k, v in entry.items()} if isinstance(entry, dict) else {}

    def save_tracker_run(self, tracker: str, entry: Mapping[str, str]) -> None:
        """Keep ``tracker``'s run (its id, where it is) so that a resume logs to the same run."""
        try:
            doc = json.loads((self.path / _TRACKERS).read_text())
        except (OSError, ValueError):
            doc = {}
        doc = {**(doc if isinstance(doc, dict) else {}), tracker: dict(entry)}
        atomic_write(self.path / _TRACKERS, json.dumps(doc, indent=1) + "\n")

    # ------------------------------------------------------------------------- checkpoints

    def has_checkpoint(self) -> bool:
        """Whether ``last.pt`` or the one before it is there to resume from."""
        return any(p.is_file() for p in (self.last_checkpoint, previous_path(self.last_checkpoint)))

    def sweep_temporaries(self) -> None:
        """Remove the temporary files a killed process left in the folder and checkpoints/."""
        for folder in (self.path, self.checkpoints):
            sweep_temporaries(folder)


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
