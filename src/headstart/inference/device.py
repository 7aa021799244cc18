"""Which device a model runs on: the one place where a user's device value is checked.

Today headstart runs inference on the CPU; CUDA and MPS devices are accepted where this machine
has them, so a later issue only has to test them. Exported ONNX models always run on the CPU
(onnxruntime's CPU provider).
"""

from __future__ import annotations

import torch

from headstart.errors import ConfigError

__all__ = ["Device", "available_devices", "best_device", "resolve_device"]

Device = str | torch.device
"""A device as users write it: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a torch.device."""

_RUNNABLE = ("cpu", "cuda", "mps")


def available_devices() -> tuple[str, ...]:
    """The devices a model can run on here: ``cpu``, then each CUDA GPU, then ``mps``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return tuple(found)


def best_device() -> torch.device:
    """The fastest device here for running a model: the current CUDA GPU, else MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: Device = "cpu") -> torch.device:
    """The torch device for ``device``, checked against what this machine has.

    ``"cuda"`` without an index means the current CUDA device, made explicit (``cuda:0``).

    Raises:
        ConfigError: ``device`` is not a device name, cannot run a model (``meta``, ...), or is
            not present on this machine; the message lists the devices that are.
    """
    try:
        parsed = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(_message(f"{device!r} is not a device name")) from None
    if parsed.type == "cpu":
        return torch.device("cpu")
    if parsed.type not in _RUNNABLE:
        raise ConfigError(_message(f"device {str(parsed)!r} cannot run a model"))
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(_message("device 'mps' is not available on this machine"))
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(_message(f"device {str(parsed)!r} is not available: no usable CUDA GPU"))
    index = torch.cuda.current_device() if parsed.index is None else parsed.index
    if index >= torch.cuda.device_count():
        raise ConfigError(_message(f"device {str(parsed)!r} is not available"))
    return torch.device("cuda", index)


def _message(problem: str) -> str:
    return f"{problem}; use one of: {', '.join(available_devices())}."
