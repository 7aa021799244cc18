"""Transfer-learning strategies as a list of phases (what trains, for how long, at which lr)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from headstart.config import Strategy
from headstart.errors import ConfigError
from headstart.zoo.spec import BackboneSpec

__all__ = ["FINETUNE_LR_FACTOR", "Phase", "plan_phases"]

FINETUNE_LR_FACTOR = 0.1
"""Two-phase: the second (full) phase's head lr is ``config.lr`` times this factor."""


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
) -> list[Phase]:
    """Turn a strategy into phases whose epochs add up to ``epochs``.

    - ``feature-extract``: one ``head`` phase (body frozen).
    - ``partial``: one ``partial`` phase training the last ``unfreeze_stages`` stages.
    - ``full``: one ``full`` phase training everything.
    - ``two-phase``: ``head`` for ``head_epochs`` epochs at ``lr``, then ``full`` for the remaining
      epochs at ``lr * FINETUNE_LR_FACTOR`` (the body gets discriminative rates below that), so the
      pretrained features are not wrecked by gradients from a fresh head.

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
    phases = [Phase("full", epochs - head_epochs, None, lr * FINETUNE_LR_FACTOR)]
    if head_epochs > 0:
        phases.insert(0, Phase("head", head_epochs, 0, lr))
    return phases
