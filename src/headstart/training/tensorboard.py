"""Optional TensorBoard event logging of the per-epoch metrics (the ``tensorboard`` extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from headstart.errors import ConfigError

__all__ = ["TensorBoardLog"]

_SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "val_f1": "macro_f1/val",
    "lr": "lr/head",
    "images_per_s": "speed/images_per_s",
}


class TensorBoardLog:
    """Writes each epoch's metrics row as TensorBoard scalars into ``log_dir``.

    Use as a context manager; ``log_epoch`` chains to ``then`` so it can wrap another callback.
    """

    def __init__(self, log_dir: str | Path, then: Callable[[dict[str, Any]], None] | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package; install it with "
                "`pip install 'headstart[tensorboard]'` (or `uv sync --extra tensorboard`)."
            ) from None
        self._writer = SummaryWriter(log_dir=str(log_dir))
        self._then = then

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Write the scalars of one epoch (step = epoch number), then call the chained callback."""
        step = int(row["epoch"])
        for key, tag in _SCALARS.items():
            if isinstance(row.get(key), (int, float)):
                self._writer.add_scalar(tag, float(row[key]), step)
        if row.get("phase"):
            self._writer.add_text("phase", str(row["phase"]), step)
        self._writer.flush()
        if self._then is not None:
            self._then(row)

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()
