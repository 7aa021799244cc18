"""The hooks training reports to, in the spirit of Lightning's ``Callback``.

Progress bars, notes for the user, metrics trackers (TensorBoard, MLflow, W&B) subclass
:class:`Callback` and override the hooks they need; every hook does nothing by default. The engine
and the pipeline call them through one :class:`CallbackList` instead of threading one callable
per concern through their call chains. :class:`Guarded` keeps a tracker's failure from stopping
training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.errors import ConfigError
from headstart.training.strategies import Phase

__all__ = [
    "BatchEnd",
    "Callback",
    "CallbackList",
    "Guarded",
    "RunEnd",
    "end_values",
    "missing_extra",
    "numbers",
]


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


@dataclass(frozen=True)
class RunEnd:
    """A run finished: the model folder and the report are written.

    Attributes:
        best_epoch: The epoch whose weights were saved.
        best_metrics: That epoch's metrics row.
        test_metrics: Metrics on the test split (None without one).
        model_dir: The model folder.
        report_dir: The report folder (None when no split was left to evaluate).
    """

    best_epoch: int
    best_metrics: Mapping[str, Any]
    test_metrics: Mapping[str, Any] | None
    model_dir: Path
    report_dir: Path | None


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

    def on_run_end(self, end: RunEnd) -> None:
        """The run finished; its model folder and report are written."""


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

    def on_run_end(self, end: RunEnd) -> None:
        for callback in self.callbacks:
            callback.on_run_end(end)


class Guarded(Callback):
    """Passes the hooks on to ``callback`` until one raises; then says so once and stops.

    A tracker that loses its server or its disk must not stop training: its error becomes a line
    for the user (``warn``) and the run goes on without it. Use as a context manager to close the
    tracker the same way (its ``__exit__``, if it has one).
    """

    def __init__(self, callback: Callback, name: str, warn: Callable[[str], None]) -> None:
        self.callback, self.name, self._warn = callback, name, warn
        self.failed = False

    def _call(self, hook: str, *args: Any, **kwargs: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self.callback, hook)(*args, **kwargs)
        except Exception as exc:  # a tracker's error of any kind must not stop training
            self.failed = True
            self._warn(f"{self.name} logging failed ({type(exc).__name__}: {exc}); training goes "
                       f"on without {self.name}")  # fmt: skip

    def on_plan(self, phases: Sequence[Phase]) -> None:
        self._call("on_plan", phases)

    def on_phase_start(self, phase: Phase, *, index: int, num_phases: int) -> None:
        self._call("on_phase_start", phase, index=index, num_phases=num_phases)

    def on_batch_end(self, batch: BatchEnd) -> None:
        self._call("on_batch_end", batch)

    def on_epoch_end(self, row: Mapping[str, Any]) -> None:
        self._call("on_epoch_end", row)

    def on_note(self, message: str) -> None:
        self._call("on_note", message)

    def on_run_end(self, end: RunEnd) -> None:
        self._call("on_run_end", end)

    def __enter__(self) -> Guarded:
        return self

    def __exit__(self, *exc: object) -> None:
        if hasattr(self.callback, "__exit__"):
            self.failed = False  # closing is worth a try even after a failed hook
            self._call("__exit__", *exc)


def numbers(row: Mapping[str, Any], *, prefix: str = "") -> dict[str, float]:
    """The numeric values of an epoch row or metrics (not booleans, not the epoch number)."""
    return {
        prefix + key: float(value) for key, value in row.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch"
    }  # fmt: skip


def end_values(end: RunEnd) -> dict[str, float]:
    """What a tracker keeps of a finished run: the best epoch, its metrics, the test metrics."""
    return {
        "best_epoch": float(end.best_epoch), **numbers(end.best_metrics, prefix="best_"),
        **numbers(end.test_metrics or {}, prefix="test_"),
    }  # fmt: skip


def missing_extra(extra: str, feature: str) -> ConfigError:
    """The one-line error for an optional package that is not installed."""
    return ConfigError(
        f"{feature} needs the {extra} package; install it with `pip install 'headstart[{extra}]'` "
        f"(or `uv sync --extra {extra}`)."
    )
