"""Notes: every note reaches each callback exactly once, whoever sends it."""

from __future__ import annotations

from headstart.pipeline.notes import Notes
from headstart.training.callbacks import Callback, CallbackList


class Heard(Callback):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def on_note(self, message: str) -> None:
        self.notes.append(message)


def test_a_training_note_and_a_pipeline_note_each_reach_a_callback_once() -> None:
    heard = Heard()
    notes = Notes(CallbackList([heard]))
    engine_listeners = CallbackList([notes, heard])  # as the pipeline hands them to the engine
    engine_listeners.on_note("stopped after epoch 7")
    notes.add("budget plan: ...")
    assert heard.notes == ["stopped after epoch 7", "budget plan: ..."]
    assert notes.messages == ["stopped after epoch 7", "budget plan: ..."]
