"""Depthwise convolutions in float32 under autocast: their bf16 backward is 2-3x slower on CPUs.

The layers keep their parameters, names and state dict; only their class is swapped for a subclass
whose ``forward`` leaves autocast for the convolution.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["has_depthwise", "set_float32_depthwise"]

_FLOAT32_CLASSES: dict[type[nn.Module], type[nn.Module]] = {}


def _float32_forward(self: nn.Conv2d, input: torch.Tensor) -> torch.Tensor:
    with torch.autocast(input.device.type, enabled=False):
        return _FLOAT32_CLASSES[type(self)].forward(self, input.float())  # the original class


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


def has_depthwise(model: nn.Module) -> bool:
    """Whether ``model`` has grouped (depthwise) convolutions, which ``float32_depthwise`` moves."""
    return any(_is_depthwise(m) for m in model.modules())


def set_float32_depthwise(model: nn.Module, enabled: bool) -> int:
    """Make depthwise convolutions of ``model`` run in float32 under autocast, or undo it.

    The layers keep their parameters, names and state dict: only their class is swapped for a
    subclass whose ``forward`` leaves autocast for the convolution (without autocast it computes
    exactly what the original does). Returns how many layers run in float32 afterwards.
    """
    count = 0
    for module in model.modules():
        cls = type(module)
        if cls in _FLOAT32_CLASSES and not enabled:
            module.__class__ = _FLOAT32_CLASSES[cls]
        elif enabled and _is_depthwise(module):
            if cls not in _FLOAT32_CLASSES:
                subclass = next((k for k, v in _FLOAT32_CLASSES.items() if v is cls), None)
                if subclass is None:
                    subclass = type(f"Float32{cls.__name__}", (cls,), {"forward": _float32_forward})
                    _FLOAT32_CLASSES[subclass] = cls
                module.__class__ = subclass
            count += 1
    return count

