"""Speed settings (channels_last, bf16/fp16 autocast, torch.compile) chosen by a short timed trial.

The fastest combination differs by model and machine, so :func:`tune_speed` times a few steps of
each candidate on a real batch (forward + backward for training, forward under
``torch.inference_mode`` for inference) and remembers the winner per host and model in
``cache_dir()/tuning.json``. The trial leaves the model as it found it: weights, buffers (BatchNorm
running statistics), gradients, memory format and train/eval mode are restored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.errors import ConfigError
from headstart.paths import cache_dir

__all__ = ["SpeedSettings", "candidate_settings", "host_name", "time_settings", "tune_speed"]

log = logging.getLogger(__name__)

_AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}
_MODES = ("train", "infer")


@dataclass(frozen=True)
class SpeedSettings:
    """How to run a model fast on one device.

    Attributes:
        device_type: ``cpu``, ``cuda`` or ``mps``.
        channels_last: Convert model and inputs to the NHWC memory format.
        autocast: ``None`` (float32), ``"bfloat16"`` or ``"float16"`` (CUDA only) mixed precision.
        compile: Wrap the model with ``torch.compile``.
    """

    device_type: str = "cpu"
    channels_last: bool = False
    autocast: str | None = None
    compile: bool = False

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
        """Apply the memory format (in place) and compile; return the module to call."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """Convert a batch of images to the memory format."""
        return (
            images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def host_name(device: torch.device | str = "cpu") -> str:
    """A key for the machine: GPU name, or CPU model name and thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"cpu:{model}:{torch.get_num_threads()}t"


def candidate_settings(device_type: str, *, try_compile: bool = False) -> list[SpeedSettings]:
    """The combinations worth timing on ``device_type``, the float32 baseline first."""
    half = ["bfloat16"] if device_type == "cpu" else ["float16", "bfloat16"]
    base = [SpeedSettings(device_type)]
    base += [SpeedSettings(device_type, channels_last=True)]
    for dtype in half:
        base += [SpeedSettings(device_type, autocast=dtype)]
        base += [SpeedSettings(device_type, channels_last=True, autocast=dtype)]
    if try_compile:
        base += [replace(s, compile=True) for s in base[:1]]
    return base


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Restore weights, buffers, grads, memory format and mode of ``model`` afterwards."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    training = model.training
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.load_state_dict(state)
        for name, param in model.named_parameters():
            param.grad = grads[name]
        model.train(training)


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


def time_settings(
    model: nn.Module, images: torch.Tensor, settings: SpeedSettings, *, mode: str, steps: int = 3
) -> float:
    """Seconds per step of ``settings`` (median of ``steps`` after one warm-up step)."""
    if mode not in _MODES:
        raise ConfigError(f"mode {mode!r} is not known; use 'train' or 'infer'.")
    times = []
    with _restored(model):
        run = settings.prepare_model(model)
        x = settings.prepare_input(images)
        model.train(mode == "train")
        for _ in range(steps + 1):
            start = time.perf_counter()
            _step(run, x, settings, mode)
            _sync(settings.device_type)
            times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def _step(model: Callable[..., Any], x: torch.Tensor, settings: SpeedSettings, mode: str) -> None:
    if mode == "infer":
        with torch.inference_mode(), settings.autocast_context():
            model(x)
        return
    with settings.autocast_context():
        out = model(x)
    out.float().mean().backward()


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def tune_speed(
    model: nn.Module,
    images: torch.Tensor,
    *,
    key: str,
    mode: str = "train",
    steps: int = 3,
    try_compile: bool = False,
    cache_file: Path | None = None,
    refresh: bool = False,
) -> SpeedSettings:
    """Pick the fastest settings for ``model`` on a batch like ``images``; cache the choice.

    Args:
        model: The network, on its device.
        images: A real batch (N, 3, H, W) on the model's device.
        key: Names the model in the cache (e.g. its zoo name).
        mode: ``train`` (forward + backward) or ``infer`` (forward only).
        steps: Timed steps per candidate, after one warm-up step.
        try_compile: Also time ``torch.compile`` (slow to warm up; kept only if it wins).
        cache_file: Where choices are kept (default ``cache_dir()/tuning.json``).
        refresh: Ignore a cached choice and time again.

    Returns:
        The winner; float32 without channels_last if nothing beats it.
    """
    device_type = images.device.type
    cache_file = cache_file or cache_dir() / "tuning.json"
    entry = f"{host_name(images.device)}|{key}|{mode}|{tuple(images.shape)}|{torch.__version__}"
    doc = _load(cache_file)
    if not refresh and entry in doc:
        return SpeedSettings(**doc[entry]["settings"])
    timings = []
    for settings in candidate_settings(device_type, try_compile=try_compile):
        try:
            seconds = time_settings(model, images, settings, mode=mode, steps=steps)
        except Exception as exc:  # noqa: BLE001 - an unsupported setting just loses the trial
            log.info("speed trial: %s failed (%s); skipped", settings, exc)
            continue
        timings.append((seconds, settings))
        log.info("speed trial %s: %.4fs/step %s", mode, seconds, settings.to_dict())
    best = min(timings, key=lambda t: t[0])[1] if timings else SpeedSettings(device_type)
    doc[entry] = {
        "settings": best.to_dict(),
        "timings": [{"seconds": s, **c.to_dict()} for s, c in timings],
    }
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, cache_file)
    return best
