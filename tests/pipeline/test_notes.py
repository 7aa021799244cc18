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


def test_a_late_subscriber_hears_the_notes_so_far_and_the_pipelines_later_ones() -> None:
    early, late = Heard(), Heard()
    notes = Notes(CallbackList([early]))
    notes.add("validation split made")
    notes.subscribe(late)  # a tracker, opened when training starts
    CallbackList([notes, early, late]).on_note("from the engine")  # as the engine tells them
    notes.add("speed: fp32")
    assert late.notes == ["validation split made", "from the engine", "speed: fp32"]
    assert early.notes == late.notes
