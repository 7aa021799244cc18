"""Atomic, resumable checkpoints that load without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain containers (dict, list, tuple, str, int, float, bool,
None) written with ``torch.save`` and read with ``torch.load(weights_only=True)``. RNG states are
stored as tensors and ints for the same reason.

A run keeps ``last.pt`` and the one before it, ``last.prev.pt``; :func:`load_latest_checkpoint`
falls back to the previous one when the latest cannot be read. Temporary files left by a process
killed mid-write are removed by :func:`sweep_temporaries`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from headstart.errors import CheckpointError

__all__ = [
    "DELAY_ENV",
    "atomic_write_text",
    "capture_rng_state",
    "load_checkpoint",
    "load_latest_checkpoint",
    "previous_path",
    "restore_rng_state",
    "save_checkpoint",
    "sweep_temporaries",
]

logger = logging.getLogger(__name__)

DELAY_ENV = "HEADSTART_CHECKPOINT_DELAY"
"""Seconds to sleep inside each checkpoint write (before and after the rename); unset = off.
Only for the kill-and-resume benchmark, which kills processes in the middle of writes."""
_TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str = "wb", *, keep_previous: bool = False) -> Iterator[IO[Any]]:
    """Write to a temp file next to ``path``; on success fsync and move it into place.

    With ``keep_previous`` the file being replaced becomes :func:`previous_path` first; ``path``
    itself always exists (hard link, then rename over it) when the file system allows links.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _test_delay()
        if keep_previous and path.exists():
            _keep_previous(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _keep_previous(path: Path) -> None:
    """Make ``previous_path(path)`` the current ``path``, leaving ``path`` in place if possible."""
    previous = previous_path(path)
    link = path.with_name(f".{previous.name}.link{_TMP_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    try:
        os.link(path, link)
        os.replace(link, previous)
    except OSError:  # no hard links here: move it (``path`` is missing until the next rename)
        os.replace(path, previous)
    _test_delay()


def _test_delay() -> None:
    """Sleep ``$HEADSTART_CHECKPOINT_DELAY`` seconds (benchmark hook; off when unset)."""
    delay = os.environ.get(DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` → ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def sweep_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files that an interrupted atomic write left in ``directory``.

    Returns:
        The files removed (each is logged).
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for stale in sorted(directory.glob(f".*{_TMP_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
            logger.info("removed %s, left by an interrupted write", stale)
    return removed


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: readers see the old or the new file."""
    with _atomic_open(Path(path), "w") as handle:
        handle.write(text)


def save_checkpoint(
    path: str | Path, state: dict[str, Any], *, keep_previous: bool = False
) -> None:
    """Write ``state`` to ``path`` atomically with ``torch.save``.

    Args:
        path: Destination file; its folder is created if needed.
        state: Tensors and plain containers only, so that loading never unpickles code.
        keep_previous: Keep the file being replaced as :func:`previous_path` (``last.prev.pt``).

    Raises:
        CheckpointError: If the file cannot be written (e.g. the disk is full); the file that was
            there before is left untouched.
    """
    path = Path(path)
    try:
        with _atomic_open(path, keep_previous=keep_previous) as handle:
            _write_state(state, handle)
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
