"""Early stopping and best-value tracking; both round-trip through ``state_dict``."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from headstart.errors import ConfigError

__all__ = ["BestTracker", "EarlyStopping", "deadline_note", "monitor_mode"]

_MODES = ("min", "max")


def monitor_mode(monitor: str) -> str:
    """``"min"`` for losses, ``"max"`` for everything else (accuracy, F1)."""
    return "min" if monitor.endswith("loss") else "max"


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ConfigError(f"mode {mode!r} is not known; use 'min' or 'max'.")
    return mode


def _better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class BestTracker:
    """Remember the best value of a monitored metric and the epoch it was reached."""

    def __init__(self, monitor: str, mode: str | None = None) -> None:
        self.monitor = monitor
        self.mode = _check_mode(mode or monitor_mode(monitor))
        self.best: float | None = None
        self.best_epoch: int = -1

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; return whether it is a new best (strictly better)."""
        if not _better(value, self.best, self.mode, 0.0):
            return False
        self.best, self.best_epoch = float(value), int(epoch)
        return True

    def state_dict(self) -> dict[str, Any]:
        """Plain-value state."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.monitor, self.mode = state["monitor"], _check_mode(state["mode"])
        self.best, self.best_epoch = state["best"], int(state["best_epoch"])


class EarlyStopping:
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` epochs.

    ``patience <= 0`` disables stopping. A NaN value counts as no improvement. In a two-phase run
    the engine resets it at the start of the last phase and only consults it there: the head phase
    always runs its planned epochs, and the fine-tuning phase gets its own full patience.
    """

    def __init__(
        self, monitor: str, mode: str | None = None, patience: int = 5, min_delta: float = 0.0
    ) -> None:
        self.monitor = monitor
        self.mode = _check_mode(mode or monitor_mode(monitor))
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.reset()

    def reset(self) -> None:
        """Forget the best value and the count of bad epochs."""
        self.best: float | None = None
        self.wait = 0
        self.stopped = False

    def step(self, value: float) -> bool:
        """Record one epoch's value; return ``True`` if training should stop."""
        if _better(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = float(value), 0
        else:
            self.wait += 1
        self.stopped = self.patience > 0 and self.wait >= self.patience
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        """Plain-value state."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "best": self.best,
            "wait": self.wait,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.monitor, self.mode = state["monitor"], _check_mode(state["mode"])
        self.patience, self.min_delta = int(state["patience"]), float(state["min_delta"])
        self.best, self.wait, self.stopped = (
            state["best"],
            int(state["wait"]),
            bool(state["stopped"]),
        )


def deadline_note(deadline: float, row: Mapping[str, Any]) -> str | None:
    """Why training stops after the epoch ``row`` (None: it goes on).

    Args:
        deadline: ``time.monotonic()`` by which training must end (0: none).
        row: The epoch's history row; another epoch is expected to take its ``seconds``.
    """
    seconds = float(row["seconds"])
    left = deadline - time.monotonic()
    if not deadline or seconds <= left:
        return None
    return (
        f"stopped after epoch {row['epoch']} to keep to the time budget (another epoch takes about "
        f"{seconds:.0f}s, {max(0.0, left):.0f}s are left); the best epoch so far is kept"
    )
