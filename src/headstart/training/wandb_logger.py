"""Optional Weights & Biases tracking of a run (the ``wandb`` extra); offline mode needs no network.

One W&B run per headstart run: the settings as its config, every epoch's metrics at step = epoch,
the notes as the run's notes, and at the end the best and test metrics and where the model and
report are in its summary. W&B does not capture the console (headstart prints its own lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headstart.errors import ConfigError
from headstart.training.callbacks import Callback, RunEnd, end_values, missing_extra, numbers

__all__ = ["WandbLogger"]


class WandbLogger(Callback):
    """Logs to a W&B run in ``project``; a context manager finishes the run.

    Args:
        project: W&B project.
        run_name: The W&B run's name (the run folder's name).
        params: The run's settings (the W&B run's config).
        mode: ``online`` or ``offline``; None lets W&B decide (``WANDB_MODE``, else online).
        folder: Where W&B keeps its local files (its ``wandb/`` folder goes inside).
        run_id: A W&B run to continue (a resumed headstart run).

    Raises:
        ConfigError: wandb is not installed, or the run cannot start (online without a login).
    """

    def __init__(
        self,
        *,
        project: str,
        run_name: str,
        params: Mapping[str, Any],
        mode: str | None = None,
        folder: str | Path | None = None,
        run_id: str | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError:
            raise missing_extra("wandb", "--tracker wandb") from None
        try:
            self._run = wandb.init(
                project=project, name=run_name, config=dict(params), mode=mode,
                dir=None if folder is None else str(folder), id=run_id,
                resume="allow" if run_id else None, allow_val_change=True,
                settings=wandb.Settings(console="off", silent=True),
            )  # fmt: skip
        except Exception as exc:  # wandb raises many kinds; all mean the run cannot start
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"cannot start a W&B run in project {project!r}: {first}; log in with "
                "`wandb login`, or use --wandb-mode offline (sync later with `wandb sync`)."
            ) from None
        self.run_id: str = str(self._run.id)
        self.offline = bool(self._run.offline)
        self.where = str(Path(self._run.dir).parent if self.offline else self._run.url)
        """The offline run's folder (for ``wandb sync``), or the online run's page."""
        self._notes: list[str] = [self._run.notes] if self._run.notes else []

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        """The epoch's metrics at step = epoch number."""
        step = int(row["epoch"])
        values: dict[str, Any] = {**numbers(row), "epoch": step}
        if row.get("phase"):
            values["phase"] = str(row["phase"])
        self._run.log(values, step=step)

    def on_note(self, message: str) -> None:
        self._notes.append(message)
        self._run.notes = "\n".join(self._notes)

    def on_run_end(self, end: RunEnd) -> None:
        """Best and test metrics, and where the model and the report are, in the summary."""
        self._run.summary.update(end_values(end))
        self._run.summary["model_dir"] = str(Path(end.model_dir).resolve())
        if end.report_dir is not None:
            self._run.summary["report_dir"] = str(Path(end.report_dir).resolve())

    def __enter__(self) -> WandbLogger:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        """Finish the run (exit code 1 after an error or an interruption)."""
        self._run.finish(exit_code=0 if kind is None else 1)
