"""Optional TensorBoard event logging of the per-epoch metrics (the ``tensorboard`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headstart.training.callbacks import Callback, missing_extra

__all__ = ["TensorBoardLogger"]

_SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "val_f1": "macro_f1/val",
    "lr": "lr/head",
    "images_per_s": "speed/images_per_s",
}


class TensorBoardLogger(Callback):
    """Writes each epoch's metrics row as TensorBoard scalars into ``log_dir``.

    Use as a context manager, which closes the event file.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_extra("tensorboard", "--tensorboard") from None
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        """Write the scalars of one epoch (step = epoch number)."""
        step = int(row["epoch"])
        for key, tag in _SCALARS.items():
            if isinstance(row.get(key), (int, float)):
                self._writer.add_scalar(tag, float(row[key]), step)
        if row.get("phase"):
            self._writer.add_text("phase", str(row["phase"]), step)
        self._writer.flush()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()
