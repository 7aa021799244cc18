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

    def on_note(self, message: str) -> None:
        self.add(message)

    def add(self, message: str, *, level: int = logging.INFO) -> None:
        self.messages.append(message)
        log.log(level, message, extra={NOTE_FLAG: True})  # shown once: the CLI prints notes
        self._callbacks.on_note(message)
