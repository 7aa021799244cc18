"""Notices worth showing the user during a run: kept, logged once, passed to the callbacks."""

from __future__ import annotations

import logging

from headstart.training.callbacks import Callback

__all__ = ["NOTE_FLAG", "Notes"]

log = logging.getLogger("headstart.pipeline")

NOTE_FLAG = "headstart_note"
"""Set on the log records of notes, which callbacks already show (a console handler skips them)."""


class Notes(Callback):
    """Notices worth showing the user: kept, logged, and passed on to the callbacks' ``on_note``."""

    def __init__(self, callbacks: Callback) -> None:
        self.messages: list[str] = []
        self._callbacks = callbacks
        self._late: list[Callback] = []

    def on_note(self, message: str) -> None:
        """A note from training, which the engine tells every callback itself: keep and log it."""
        self._keep(message, logging.INFO)

    def add(self, message: str, *, level: int = logging.INFO) -> None:
        """A note of the pipeline's own: keep, log and pass it on to the callbacks."""
        self._keep(message, level)
        self._callbacks.on_note(message)
        for callback in self._late:
            callback.on_note(message)

    def subscribe(self, callback: Callback) -> None:
        """Pass the notes so far, and the pipeline's later ones, to ``callback`` (a tracker that
        starts when training does; the engine tells it its own notes)."""
        for message in self.messages:
            callback.on_note(message)
        self._late.append(callback)

    def _keep(self, message: str, level: int) -> None:
        self.messages.append(message)
        log.log(level, message, extra={NOTE_FLAG: True})  # shown once: the CLI prints notes
