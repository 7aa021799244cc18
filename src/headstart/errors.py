"""Exceptions raised by headstart, each carrying a message that says how to fix the problem."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HeadstartError",
    "ModelError",
    "closest",
]


class HeadstartError(Exception):
    """Base class of every error caused by user input; the CLI prints it as one line (exit 2)."""


class ConfigError(HeadstartError):
    """A setting has a bad value or a bad combination with another setting."""


class DataError(HeadstartError):
    """The data folder, a split or an image cannot be used."""


class ModelError(HeadstartError):
    """A model name, weight file or model directory cannot be used."""


class CheckpointError(HeadstartError):
    """A checkpoint is missing, corrupt or does not match the run."""


def closest(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """Return a hint like ``" Did you mean: a, b?"`` for ``name``, or ``""`` if nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
