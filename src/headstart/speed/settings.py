"""How to run a model on one device: memory layout, autocast dtype, compile, depthwise precision.

A :class:`SpeedSettings` is chosen per model and machine by the timed trial in
:mod:`headstart.speed.trial`; the training loop, feature extraction and prediction apply it.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from headstart.errors import ConfigError
from headstart.speed.depthwise import set_float32_depthwise

__all__ = ["SpeedSettings", "describe", "prefers_channels_last"]

_AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class SpeedSettings:
    """How to run a model fast on one device.

    Attributes:
        device_type: ``cpu``, ``cuda`` or ``mps``.
        channels_last: Convert model and inputs to the NHWC memory format.
        autocast: ``None`` (float32), ``"bfloat16"`` or ``"float16"`` (CUDA only) mixed precision.
        compile: Wrap the model with ``torch.compile``.
        float32_depthwise: Under autocast, run depthwise convolutions in float32 (their bf16
            backward is 2-3x slower than float32 on CPUs, while the other layers gain).
    """

    device_type: str = "cpu"
    channels_last: bool = False
    autocast: str | None = None
    compile: bool = False
    float32_depthwise: bool = False

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in _AUTOCAST:
            raise ConfigError(
                f"autocast {self.autocast!r} is not known; use None, 'bfloat16' or 'float16'."
            )

    def autocast_context(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context for forward passes (a no-op for float32)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_AUTOCAST[self.autocast])

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Set the memory format and depthwise precision (in place), compile; return the callable.

        Settings prepared before are undone: a model prepared channels-last and then with
        ``channels_last=False`` ends up contiguous again.
        """
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        model.to(memory_format=layout)
        set_float32_depthwise(model, self.float32_depthwise and self.autocast is not None)
        return cast(nn.Module, torch.compile(model)) if self.compile else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """Convert a batch of images to the memory format."""
        return (
            images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)




def describe(settings: SpeedSettings) -> str:
    """A few words for users: ``bf16 + channels-last``, ``fp32``, ..."""
    words = [{"bfloat16": "bf16", "float16": "fp16"}.get(settings.autocast or "", "fp32")]
    if settings.autocast and settings.float32_depthwise:
        words[0] += " (depthwise convolutions fp32)"
    if settings.channels_last:
        words.append("channels-last")
    if settings.compile:
        words.append("torch.compile")
    return " + ".join(words)

def prefers_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` is a convolutional network, which runs 1.5-2x faster channels-last on CPUs.

    Exported wrappers (ONNX sessions, TorchScript) hold no ``nn.Conv2d`` and so keep their layout.
    """
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
