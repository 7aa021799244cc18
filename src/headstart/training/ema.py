"""An exponential moving average of the weights a phase trains (timm's ``ModelEmaV3``).

Each phase averages the module it trains (the model, or its head on cached features) from the
weights it starts with. The average is updated after every optimizer step with timm's warm-up
(decay ``1 - (1 + t)^(-2/3)``, capped at ``decay``), so that short fine-tuning runs, a few hundred
steps, are not dominated by the starting weights. Its weights and step count round-trip through
``state_dict``, so a resume continues it exactly (on the CPU; bfloat16 weights use timm's
stochastic rounding, whose private generator is not kept).

To validate the average, or to keep it as the best weights, :meth:`EmaWeights.applied` puts it in
the trained module for the time of a ``with`` block and then puts the live weights back, bit for
bit: whatever wraps the module (Fabric's precision, DDP) runs the averaged weights unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from timm.utils import ModelEmaV3
from torch import nn

from headstart.training.tracking import monitor_mode

__all__ = ["EmaWeights", "ema_wins"]


class EmaWeights:
    """The moving average of ``module``'s parameters and buffers.

    Args:
        module: The unwrapped module the phase trains (its parameters are the model's).
        decay: The highest decay, reached after the warm-up.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.module = module
        self.average = ModelEmaV3(module, decay=decay, use_warmup=True)
        self.average.requires_grad_(False)
        self.steps = 0

    def update(self) -> None:
        """Fold the module's current weights in (call after every optimizer step)."""
        self.steps += 1
        self.average.update(self.module, step=self.steps)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Put the averaged weights in the module for the block; the live ones come back after."""
        live = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.average.module.state_dict())
        try:
            yield
        finally:
            self.module.load_state_dict(live)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and ints only (a checkpoint loads it without unpickling code)."""
        weights = {k: v.detach().cpu() for k, v in self.average.module.state_dict().items()}
        return {"steps": self.steps, "weights": weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.average.module.load_state_dict(state["weights"])
        self.steps = int(state["steps"])


def ema_wins(live: Mapping[str, Any], ema: Mapping[str, Any], monitor: str) -> bool:
    """Whether the averaged weights' metrics beat the live ones' by ``monitor`` (ties: live)."""
    a, b = float(live[monitor]), float(ema[monitor])
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and not math.isnan(b)
    return b < a if monitor_mode(monitor) == "min" else b > a
