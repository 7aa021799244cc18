"""Transfer-learning strategies as a list of phases (what trains, for how long, at which lr)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from headstart.config import Strategy, TrainConfig
from headstart.errors import ConfigError
from headstart.zoo.spec import BackboneSpec

__all__ = ["FINETUNE_LR_FACTOR", "Phase", "describe_split", "plan_phases", "split_epochs"]

FINETUNE_LR_FACTOR = TrainConfig.finetune_lr_factor
"""Two-phase: the second (full) phase's head lr is ``config.lr`` times this factor (default)."""


@dataclass(frozen=True)
class Phase:
    """One stretch of training with a fixed set of trainable parameters.

    Attributes:
        name: ``head``, ``partial`` or ``full``.
        epochs: Epochs in this phase.
        trainable_stages: Body stages trained counting back from the output (0: head only,
            ``None``: everything).
        lr: The head's learning rate in this phase; the body's rates are derived from it with
            ``backbone_lr_factor`` and ``layer_decay``.
    """

    name: str
    epochs: int
    trainable_stages: int | None
    lr: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and reports)."""
        return asdict(self)


def plan_phases(
    strategy: Strategy | str,
    spec: BackboneSpec,
    *,
    epochs: int,
    head_epochs: int,
    unfreeze_stages: int,
    lr: float,
    finetune_lr_factor: float = FINETUNE_LR_FACTOR,
) -> list[Phase]:
    """Turn a strategy into phases whose epochs add up to ``epochs``.

    - ``feature-extract``: one ``head`` phase (body frozen).
    - ``partial``: one ``partial`` phase training the last ``unfreeze_stages`` stages.
    - ``full``: one ``full`` phase training everything.
    - ``two-phase``: ``head`` for ``head_epochs`` epochs at ``lr``, then ``full`` for the remaining
      epochs at ``lr * finetune_lr_factor`` (the body gets discriminative rates below that), so the
      pretrained features are not wrecked by gradients from a fresh head. The head phase leaves
      at least one epoch to fine-tune (``split_epochs``): every ``epochs`` from 1 up works.

    Raises:
        ConfigError: If ``partial`` asks for more stages than the backbone has.
    """
    strategy = Strategy(strategy)
    if strategy is Strategy.FEATURE_EXTRACT:
        return [Phase("head", epochs, 0, lr)]
    if strategy is Strategy.PARTIAL:
        if unfreeze_stages > spec.num_stages:
            raise ConfigError(
                f"--unfreeze-stages {unfreeze_stages} is beyond the {spec.num_stages} "
                f"stages of {spec.name}; use 0..{spec.num_stages}."
            )
        return [Phase("partial", epochs, unfreeze_stages, lr)]
    if strategy is Strategy.FULL:
        return [Phase("full", epochs, None, lr)]
    head, full = split_epochs(epochs, head_epochs)
    phases = [Phase("head", head, 0, lr)] if head else []
    return phases + ([Phase("full", full, None, lr * finetune_lr_factor)] if full else [])


def split_epochs(epochs: int, head_epochs: int) -> tuple[int, int]:
    """Two-phase: the (head, fine-tuning) epochs of ``epochs`` in all.

    The head gets ``head_epochs`` but leaves one epoch to fine-tune; a single epoch trains the
    head only (a fresh head's gradients would wreck the pretrained body), unless
    ``head_epochs`` is 0.
    """
    head = min(head_epochs, max(epochs - 1, 1))
    return head, epochs - head


def describe_split(epochs: int, head_epochs: int) -> str | None:
    """What the user should know when ``split_epochs`` did not give the head ``head_epochs``."""
    head, full = split_epochs(epochs, head_epochs)
    if head == head_epochs:
        return None
    if not full:
        return "--epochs 1 trains the head only; the body fine-tunes from --epochs 2 on"
    return (
        f"--epochs {epochs} leaves {head} of the {head_epochs} --head-epochs, so that {full} "
        f"epoch{'s' if full != 1 else ''} fine-tune{'s' if full == 1 else ''} the body"
    )
