"""Guarded: a tracker's error becomes one warning, and training's callbacks go on."""

from __future__ import annotations

import pytest

from headstart.training.callbacks import Callback, Guarded


class Flaky(Callback):
    def __init__(self) -> None:
        self.rows: list[int] = []
        self.closed = False

    def on_epoch_end(self, row) -> None:
        if row["epoch"] == 2:
            raise OSError("disk full")
        self.rows.append(row["epoch"])

    def __exit__(self, *exc: object) -> None:
        self.closed = True
        raise RuntimeError("server gone")


def test_a_failing_tracker_warns_once_and_is_left_out() -> None:
    warnings: list[str] = []
    flaky = Flaky()
    with Guarded(flaky, "mlflow", warnings.append) as guarded:
        for epoch in (1, 2, 3):
            guarded.on_epoch_end({"epoch": epoch})
        guarded.on_note("after the failure")
    assert flaky.rows == [1] and flaky.closed
    assert warnings == [
        "mlflow logging failed (OSError: disk full); training goes on without mlflow",
        "mlflow logging failed (RuntimeError: server gone); training goes on without mlflow",
    ]


def test_an_interruption_is_not_swallowed() -> None:
    class Stop(Callback):
        def on_note(self, message: str) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Guarded(Stop(), "wandb", print).on_note("x")
