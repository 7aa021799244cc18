"""Resuming: which checkpoint to continue from, whether it fits this run, and where to restart.

``last.pt`` holds the model, optimizer, schedule, phase position, steps done in the current epoch,
early-stopping and best state, history, the global RNG states, the training batches' generator
state at the start of the epoch, the phase's weight average (EMA, when on) and the learning-rate
trace. Resuming replays the epoch's sample order from that generator,
skips the batches already trained and restores the RNG states, so a run on the CPU with
``num_workers=0`` ends with the same weights, bit for bit, however often it was killed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from headstart.config import RESUME_FREE, RESUME_INEXACT, TrainConfig, current_name
from headstart.errors import CheckpointError
from headstart.files import previous_path
from headstart.training.checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from headstart.training.loop import EpochProgress
from headstart.training.strategies import Phase

__all__ = [
    "CHECKPOINT_FORMAT",
    "RESUME_KEYS",
    "ResumePoint",
    "load_resume_state",
    "resume_point",
    "slim_finished_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
"""2: every phase starts from the seed and the best weights so far; feature phases checkpoint."""
RESUME_KEYS = (
    "format",
    "model",
    "optimizer",
    "scheduler",
    "phase_index",
    "epoch_in_phase",
    "phases",
    "early_stopping",
    "best",
    "history",
    "config",
    "rng",
    "loader_generator",
)


@dataclass
class ResumePoint:
    """Where training (re)starts: a phase, epochs done in it, and the states to restore.

    A point with no optimizer state starts its phase afresh (seeded, from the best weights so far).
    """

    phase_index: int = 0
    epochs_done: int = 0
    within: EpochProgress | None = None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    loader_generator: torch.Tensor | None = None
    speed: dict[str, Any] | None = None
    ema: dict[str, Any] | None = None

    @property
    def mid_phase(self) -> bool:
        """Whether this continues a phase that already trained (its states are restored)."""
        return self.optimizer is not None


def load_resume_state(
    path: Path, phases: Sequence[Phase], run_config: Mapping[str, Any]
) -> tuple[dict[str, Any], Path]:
    """The latest usable checkpoint at ``path`` (or the one before it) that fits this run.

    Raises:
        CheckpointError: No usable checkpoint, or it was written with other settings or phases.
    """
    state, used = load_latest_checkpoint(path, required=RESUME_KEYS)
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {used} has format {state['format']}, this headstart reads "
            f"{CHECKPOINT_FORMAT}; resume with the headstart version that wrote it."
        )
    saved = {current_name(k): v for k, v in state["config"].items()}
    # settings added after the checkpoint was written take their defaults
    saved = {**TrainConfig().to_dict(), **saved}
    current = dict(run_config)
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    inexact = [k for k in changed if k in RESUME_INEXACT]
    if inexact:
        logger.warning("resuming with other %s: not bit-exact any more", ", ".join(inexact))
    wrong = [k for k in changed if k not in RESUME_FREE + RESUME_INEXACT]
    if wrong or state["phases"] != [p.to_dict() for p in phases]:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in wrong)
        raise CheckpointError(
            f"checkpoint {used} was written with other settings ({detail or 'phases'}); resume "
            "with the run's own config.yaml, or start a new run."
        )
    return state, used


def resume_point(
    state: dict[str, Any], phases: Sequence[Phase], *, device_type: str, precision: str
) -> ResumePoint:
    """Where to continue after ``state``: mid-epoch, at the next epoch, or at the next phase.

    The checkpoint's speed settings are reused when the device type and ``precision`` are those
    it was written with; otherwise the phase chooses again.
    """
    speed = state.get("speed")
    same = speed is not None and speed.get("device_type") == device_type
    same = same and state["config"].get("precision") == precision
    point = ResumePoint(
        phase_index=int(state["phase_index"]),
        epochs_done=int(state["epoch_in_phase"]),
        optimizer=state["optimizer"],
        scheduler=state["scheduler"],
        rng=state["rng"],
        loader_generator=state["loader_generator"],
        speed=speed if same else None,
        ema=state.get("ema"),
    )
    if state.get("within_epoch") is not None:
        point.within = EpochProgress.from_state_dict(state["within_epoch"])
    elif point.epochs_done >= phases[point.phase_index].epochs:  # phase done: start the next
        point = ResumePoint(point.phase_index + 1)
    return point


SLIMMED = ("optimizer", "scheduler", "ema", "within_epoch", "rng_ranks", "best_model")
"""What a finished run's ``last.pt`` no longer holds (its ``model`` becomes the best weights)."""


def slim_finished_checkpoint(path: Path) -> int:
    """Once a run is complete, keep in ``last.pt`` only what continuing the finished run needs
    (its position, history and best weights: a resume then trains nothing), not the optimizer
    state or a second copy of the weights; remove ``last.prev.pt``.

    Returns:
        The bytes freed.
    """
    before = sum(p.stat().st_size for p in (path, previous_path(path)) if p.exists())
    state = load_checkpoint(path)
    if state.get("best_model") is not None:
        state["model"] = state["best_model"]
    state.update(dict.fromkeys(SLIMMED))
    save_checkpoint(path, state)
    previous_path(path).unlink(missing_ok=True)
    return before - path.stat().st_size
