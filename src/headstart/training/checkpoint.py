"""Atomic, resumable checkpoints that load without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain containers (dict, list, tuple, str, int, float, bool,
None) written with ``torch.save`` and read with ``torch.load(weights_only=True)``. RNG states are
stored as tensors and ints for the same reason.

A run keeps ``last.pt`` and the one before it, ``last.prev.pt``; :func:`load_latest_checkpoint`
falls back to the previous one when the latest cannot be read. Files are written by the one atomic
write (``headstart.files.atomic_write``), so a process killed mid-write leaves the old file.
"""

from __future__ import annotations

import errno
import logging
import random
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from headstart.errors import CheckpointError
from headstart.files import atomic_write, previous_path

__all__ = [
    "capture_rng_state",
    "load_checkpoint",
    "load_latest_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)


def save_checkpoint(
    path: str | Path, state: dict[str, Any], *, keep_previous: bool = False
) -> None:
    """Write ``state`` to ``path`` atomically with ``torch.save``.

    Args:
        path: Destination file; its folder is created if needed.
        state: Tensors and plain containers only, so that loading never unpickles code.
        keep_previous: Keep the file being replaced as ``files.previous_path`` (``last.prev.pt``).

    Raises:
        CheckpointError: If the file cannot be written (e.g. the disk is full); the file that was
            there before is left untouched.
    """
    path = Path(path)
    try:
        atomic_write(path, lambda handle: _write_state(state, handle), keep_previous=keep_previous)
    except OSError as exc:
        kept = f"; {path} still holds the previous checkpoint" if path.exists() else ""
        if exc.errno == errno.ENOSPC:
            raise CheckpointError(
                f"disk full while writing checkpoint {path}{kept}. Free space on that disk "
                "(or choose another --out) and resume the run."
            ) from None
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}{kept}") from None


def _write_state(state: dict[str, Any], handle: IO[bytes]) -> None:
    """Serialize ``state`` into ``handle`` (the one place that writes checkpoint bytes)."""
    torch.save(state, handle)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU.

    Raises:
        CheckpointError: If the file is missing, corrupt or holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; check the run folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a headstart checkpoint ({type(exc).__name__}); "
            "delete it and start the run again."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict; it is not from headstart.")
    return state


def load_latest_checkpoint(
    path: str | Path, *, required: tuple[str, ...] = ()
) -> tuple[dict[str, Any], Path]:
    """Load ``path`` or, if it is missing or unreadable, the previous one, with a warning.

    Args:
        path: The latest checkpoint, e.g. ``checkpoints/last.pt``.
        required: Keys a usable checkpoint must hold.

    Returns:
        The state and the file it came from.

    Raises:
        CheckpointError: If neither file holds a usable checkpoint.
    """
    problems = []
    for candidate in (Path(path), previous_path(path)):
        try:
            state = load_checkpoint(candidate)
            missing = [key for key in required if key not in state]
            if missing:
                raise CheckpointError(f"checkpoint {candidate} lacks {', '.join(missing)}")
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems:
            logger.warning("%s; resuming from the previous checkpoint %s", problems[0], candidate)
        return state, candidate
    raise CheckpointError(
        "no usable checkpoint to resume from: " + " | ".join(problems) + " Start the run again."
    )


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (if present) CUDA RNG states as tensors and ints."""
    version, py_state, gauss = random.getstate()
    np_state: Any = np.random.get_state(legacy=True)
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np_state
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
