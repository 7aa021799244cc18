"""The hooks training reports to, in the spirit of Lightning's ``Callback``.

Progress bars, notes for the user, metrics loggers (TensorBoard; later MLflow, W&B) subclass
:class:`Callback` and override the hooks they need; every hook does nothing by default. The engine
and the pipeline call them through one :class:`CallbackList` instead of threading one callable
per concern through their call chains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headstart.training.strategies import Phase

__all__ = ["BatchEnd", "Callback", "CallbackList"]


@dataclass(frozen=True)
class BatchEnd:
    """One training step done.

    Attributes:
        batch: Steps done in this epoch (1 after the first).
        num_batches: Steps in the epoch.
        loss: The step's training loss.
        images_per_s: Training speed of the epoch so far.
    """

    batch: int
    num_batches: int
    loss: float
    images_per_s: float


class Callback:
    """Training events; override the hooks you need."""

    def on_plan(self, phases: Sequence[Phase]) -> None:
        """Training starts (or resumes) with these phases."""

    def on_phase_start(self, phase: Phase, *, index: int, num_phases: int) -> None:
        """A phase (``index`` counts from 0) starts or resumes."""

    def on_batch_end(self, batch: BatchEnd) -> None:
        """A training step finished."""

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        """An epoch finished; ``row`` holds its metrics (``run_folder.HISTORY_COLUMNS``)."""

    def on_note(self, message: str) -> None:
        """Something the user should know (a renamed folder, a made split, a speed choice)."""


class CallbackList(Callback):
    """Calls every hook of each callback in turn, in the order given."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_plan(self, phases: Sequence[Phase]) -> None:
        for callback in self.callbacks:
            callback.on_plan(phases)

    def on_phase_start(self, phase: Phase, *, index: int, num_phases: int) -> None:
        for callback in self.callbacks:
            callback.on_phase_start(phase, index=index, num_phases=num_phases)

    def on_batch_end(self, batch: BatchEnd) -> None:
        for callback in self.callbacks:
            callback.on_batch_end(batch)

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(row)

    def on_note(self, message: str) -> None:
        for callback in self.callbacks:
            callback.on_note(message)
