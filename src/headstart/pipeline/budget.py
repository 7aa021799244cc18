"""``--budget``: plan image size, epochs and batch size so the whole command fits a time budget.

The planner works from measured speeds (:func:`measure_speeds` times a few training and inference
steps of the model at two image sizes; decoding is timed by the audit that already ran) and the
size of the data. For every candidate image size and number of fine-tuning epochs it estimates
the time of each part of the command (decoded-image cache, feature extraction for the head phase,
the head epochs on cached features, the fine-tuning epochs with their validation, the test
evaluation and the report) and keeps the plans that end inside the time left. Among those it
takes the one with the best expected accuracy under a simple model (:func:`expected_score`):
more epochs help with diminishing returns, and a larger input helps up to the
model's own input size. Settings the user gave explicitly are kept; the planner plans the rest
and says what it chose and why. Early stopping may end a run sooner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from headstart.errors import ConfigError

__all__ = [
    "BudgetPlan",
    "Speeds",
    "Workload",
    "estimate_seconds",
    "expected_score",
    "plan_budget",
]

SIZES = (64, 96, 128, 160, 192, 224)
"""Image sizes the planner considers (those above the model's own input size are left out)."""
MAX_EPOCHS = 30
HEAD_EPOCHS = 2
"""Head epochs on cached features: a second or two even on large data."""
FEATURE_EPOCHS = 10
"""Epochs of a feature-extract plan (early stopping ends it sooner)."""
TRIAL_STEPS = 9
"""Steps the speed trial of a phase runs (three candidates, a warm-up and two timed steps)."""
REPORT_SECONDS = 6.0
"""Writing the report's tables and pictures, measured at 3-6 s here."""
EPOCHS_FOR_HALF = 3.0
"""Fine-tuning epochs at which half of the attainable gain is reached (expected_score)."""


@dataclass(frozen=True)
class Workload:
    """How much data the command handles."""

    n_train: int
    n_val: int
    n_eval: int  # images scored at the end: the test split, else the validation split
    cache_warm: bool = False


@dataclass(frozen=True)
class Speeds:
    """Images per second of this model on this machine, as functions of the image size."""

    train: Callable[[int], float]
    infer: Callable[[int], float]
    decode: float


@dataclass(frozen=True)
class BudgetPlan:
    """What the planner chose, the time it expects each part to take, and why."""

    image_size: int
    strategy: str
    head_epochs: int
    epochs: int  # all epochs, head ones included (TrainConfig.epochs)
    batch_size: int
    seconds: dict[str, float] = field(default_factory=dict)
    budget: float = 0.0
    left: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def settings(self) -> dict[str, int | str]:
        """The settings this plan gives a run."""
        return {
            "image_size": self.image_size, "strategy": self.strategy, "epochs": self.epochs,
            "head_epochs": self.head_epochs, "batch_size": self.batch_size,
        }  # fmt: skip

    def describe(self) -> str:
        """One line for the user: the plan, and the expected time of each part."""
        parts = ", ".join(f"{name} {s:.0f}s" for name, s in self.seconds.items() if s >= 0.5)
        full = self.epochs - self.head_epochs
        epochs = (
            f"{self.head_epochs} head + {full} fine-tuning epochs"
            if self.strategy == "two-phase"
            else f"{self.epochs} epochs"
        )
        return (
            f"budget plan: {self.strategy}, {self.image_size} px, {epochs}, batch "
            f"{self.batch_size}; expected {self.total:.0f}s of the {self.left:.0f}s left of "
            f"{self.budget:.0f}s ({parts})"
        )


def expected_score(image_size: int, full_epochs: int, model_size: int) -> float:
    """A monotone proxy for held-out accuracy, used only to rank plans that fit the budget.

    Fine-tuning gains saturate with the epochs (half of the gain after ``EPOCHS_FOR_HALF``), and a
    larger input helps up to the model's own size with diminishing returns (the square root of
    the size ratio). The head phase alone scores a little, so any fine-tuning epoch beats none
    when it fits. On the 1,000-image Fashion-MNIST subset, 64 px with 6 fine-tuning epochs and
    96 px with 4 (the same time) reached the same accuracy (BENCHMARKS.md), which this model
    reproduces within 5%.
    """
    training = full_epochs / (full_epochs + EPOCHS_FOR_HALF)
    resolution = math.sqrt(min(image_size, model_size) / model_size)
    return resolution * (0.1 + training)


def estimate_seconds(
    work: Workload,
    speeds: Speeds,
    *,
    image_size: int,
    head_epochs: int,
    full_epochs: int,
    batch_size: int = 32,
) -> dict[str, float]:
    """The expected seconds of each part of a training command with these settings."""
    infer, train = speeds.infer(image_size), speeds.train(image_size)
    n_seen = work.n_train + work.n_val
    trial_steps = TRIAL_STEPS * batch_size
    return {
        "speed trials": (trial_steps / train if full_epochs else 0.0)
        + (trial_steps / infer if head_epochs else 0.0),
        "image cache": 0.0 if work.cache_warm or not full_epochs else n_seen / speeds.decode,
        "features": n_seen / infer if head_epochs else 0.0,
        "head epochs": head_epochs * n_seen / 50_000,
        "fine-tuning": full_epochs * (work.n_train / train + work.n_val / infer),
        "test + report": work.n_eval / infer + REPORT_SECONDS,
    }


def plan_budget(
    left: float,
    work: Workload,
    speeds: Speeds,
    *,
    model_size: int,
    fixed: Mapping[str, int | str | None] | None = None,
    sizes: Sequence[int] = SIZES,
    budget: float = 0.0,
) -> BudgetPlan:
    """The plan with the best expected accuracy that ends within ``left`` seconds.

    Args:
        left: Seconds left of the budget when training would start.
        work: The data's size.
        speeds: Measured (or, in tests, simulated) speeds.
        model_size: The model's own input size (larger sizes are not considered).
        fixed: Settings the user gave explicitly (``image_size``, ``epochs``, ``head_epochs``,
            ``batch_size``, ``strategy``); the planner keeps them. A two-phase plan without
            fine-tuning epochs becomes feature-extract.
        sizes: Candidate image sizes.
        budget: The whole budget, for the message.

    Raises:
        ConfigError: Not even the head phase at the smallest size fits; says the least budget
            that would.
    """
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
    batch = int(fixed.get("batch_size") or 32)
    candidates = [int(fixed["image_size"])] if "image_size" in fixed else [
        s for s in sizes if s <= max(model_size, min(sizes))
    ]  # fmt: skip
    strategy = str(fixed.get("strategy", "two-phase"))
    head = int(fixed.get("head_epochs", HEAD_EPOCHS)) if strategy == "two-phase" else 0
    best: tuple[float, BudgetPlan] | None = None
    for size in candidates:
        for full in _full_epoch_choices(fixed, head, strategy):
            on_features = strategy == "feature-extract"  # its epochs train the head on features
            heads, bodies = (full, 0) if on_features else (head, full)
            seconds = estimate_seconds(work, speeds, image_size=size, head_epochs=heads,
                                       full_epochs=bodies, batch_size=batch)  # fmt: skip
            if sum(seconds.values()) > left:
                break  # more epochs only take longer
            score = expected_score(size, bodies, model_size) + 1e-6 * heads
            chosen = strategy if full or strategy != "two-phase" else "feature-extract"
            epochs = heads + bodies if chosen != "feature-extract" or on_features else head
            plan = BudgetPlan(size, chosen, heads if chosen == "two-phase" else 0, epochs,
                              batch, seconds, budget, left)  # fmt: skip
            if best is None or score > best[0]:
                best = (score, plan)
    if best is None:
        smallest = min(candidates)
        need = sum(estimate_seconds(work, speeds, image_size=smallest, head_epochs=max(head, 1),
                                    full_epochs=0).values())  # fmt: skip
        raise ConfigError(
            f"--budget leaves {left:.0f}s for training, but even {max(head, 1)} head epoch(s) at "
            f"{smallest} px need about {need:.0f}s here; give a budget of at least "
            f"{math.ceil(budget - left + need)}s."
        )
    return best[1]


def _full_epoch_choices(fixed: Mapping[str, int | str], head: int, strategy: str) -> range:
    """Fine-tuning epochs to try (the body trains in them; for feature-extract, head epochs)."""
    if "epochs" in fixed:
        full = max(0, int(fixed["epochs"]) - head)
        return range(full, full + 1)
    if strategy == "feature-extract":  # head epochs on features cost next to nothing
        return range(FEATURE_EPOCHS, FEATURE_EPOCHS + 1)
    return range(0 if strategy == "two-phase" else 1, MAX_EPOCHS + 1)
