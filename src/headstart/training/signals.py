"""Stop training cleanly on SIGINT / SIGTERM: finish the step, write a checkpoint, then stop."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.errors import HeadstartError

__all__ = ["StopRequest", "TrainingInterrupted", "stop_on_signals"]

logger = logging.getLogger(__name__)


class TrainingInterrupted(HeadstartError):
    """Training stopped on SIGINT / SIGTERM after writing a checkpoint to resume from.

    Attributes:
        checkpoint: The checkpoint written just before stopping.
    """

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class StopRequest:
    """Set by the signal handler; the engine checks it after every step."""

    signum: int | None = None

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name if self.signum else "a signal"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While active, SIGINT / SIGTERM ask training to stop after the current step.

    A second signal raises ``KeyboardInterrupt`` at once. Handlers are installed only in the
    main thread and the previous ones are put back afterwards.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.signum is not None:
            raise KeyboardInterrupt
        request.signum = signum
        logger.warning(
            "%s received: stopping after the current step (Ctrl-C again to quit at once)",
            signal.Signals(signum).name,
        )

    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
