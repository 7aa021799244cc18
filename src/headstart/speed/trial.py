"""The timed speed trial: which settings run a model fastest here, remembered per host and model.

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
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.errors import ConfigError
from headstart.files import atomic_write, cache_dir
from headstart.speed.settings import SpeedSettings

__all__ = [
    "candidate_settings",
    "host_name",
    "time_candidates",
    "time_settings",
    "training_candidates",
    "tune_speed",
]

log = logging.getLogger(__name__)

_MODES = ("train", "infer")


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


def training_candidates(
    device_type: str, *, conv: bool, depthwise: bool = False, bf16_supported: bool = True
) -> list[SpeedSettings]:
    """What ``--precision auto`` times for training on ``device_type``, float32 first.

    On a CPU a convolutional network always runs channels-last (measured 1.5-6x faster here), so
    only the autocast dtype is timed; on a GPU both layouts are. float16 needs a gradient scaler
    and is left to an explicit ``--precision 16-mixed``; MPS keeps float32. Networks with
    ``depthwise`` convolutions also try bf16 with those layers in float32 on a CPU.
    """
    if device_type == "mps":  # no autocast trial there; the default layout
        return [SpeedSettings(device_type)]
    layouts = [True] if conv and device_type == "cpu" else [False, True] if conv else [False]
    dtypes: list[str | None] = [None]
    if device_type in ("cpu", "cuda") and bf16_supported:
        dtypes.append("bfloat16")
    found = [
        SpeedSettings(device_type, channels_last=layout, autocast=dtype)
        for dtype in dtypes
        for layout in layouts
    ]
    if depthwise and device_type == "cpu" and bf16_supported:
        found += [replace(s, float32_depthwise=True) for s in found if s.autocast]
    return found


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Restore weights, buffers, grads, memory format and mode of ``model`` afterwards."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    modes = {m: m.training for m in model.modules()}  # per module: frozen BatchNorm stays eval
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):  # dropout draws leave the run's RNG untouched
            yield
    finally:
        SpeedSettings().prepare_model(model)  # contiguous, original layer classes
        model.load_state_dict(state)
        for name, param in model.named_parameters():
            param.grad = grads[name]
        for module, training in modes.items():
            module.training = training


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()
    elif device_type == "mps":
        torch.mps.synchronize()


def time_settings(
    model: nn.Module, images: torch.Tensor, settings: SpeedSettings, *, mode: str, steps: int = 3
) -> float:
    """Seconds per step of ``settings`` (median of ``steps`` after one warm-up step).

    ``mode="infer"`` runs the model in eval mode; ``mode="train"`` keeps the train/eval mode of
    every module as the caller set it (e.g. frozen BatchNorm layers in eval), or puts a model in
    eval mode into train mode.
    """
    timings = time_candidates(model, images, [settings], mode=mode, steps=steps)
    if not timings:
        raise ConfigError(
            f"{settings} cannot run this model here; time other settings or use the defaults."
        )
    return timings[0][0]


def time_candidates(
    model: nn.Module,
    images: torch.Tensor,
    candidates: list[SpeedSettings],
    *,
    mode: str,
    steps: int = 3,
) -> list[tuple[float, SpeedSettings]]:
    """Median seconds per step of each candidate that runs, timed in interleaved rounds.

    Each candidate gets one warm-up step; then every round times one step of each candidate in
    turn, so a burst of load from other processes hits all candidates alike instead of deciding
    the winner. Candidates that raise are left out (logged).
    """
    if mode not in _MODES:
        raise ConfigError(f"mode {mode!r} is not known; use 'train' or 'infer'.")
    with _restored(model):
        if mode == "infer":
            model.eval()
        elif not model.training:
            model.train()
        runnable: dict[SpeedSettings, tuple[nn.Module, torch.Tensor]] = {}
        for settings in candidates:
            try:
                run, x = settings.prepare_model(model), settings.prepare_input(images)
                _step(run, x, settings, mode)  # warm-up: allocations, kernel selection, compile
            except Exception as exc:  # noqa: BLE001 - an unsupported setting just loses the trial
                log.info("speed trial: %s failed (%s); skipped", settings, exc)
                continue
            runnable[settings] = (run, x)
        times: dict[SpeedSettings, list[float]] = {s: [] for s in runnable}
        for _ in range(steps):
            for settings, (run, x) in runnable.items():
                settings.prepare_model(model)  # layout and layer classes of this candidate
                start = time.perf_counter()
                _step(run, x, settings, mode)
                _sync(settings.device_type)
                times[settings].append(time.perf_counter() - start)
    return [(sorted(t)[len(t) // 2], s) for s, t in times.items()]


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
    candidates: list[SpeedSettings] | None = None,
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
        candidates: The settings to time (default :func:`candidate_settings`); the first is the
            fallback when all fail.
        cache_file: Where choices are kept (default ``cache_dir()/tuning.json``).
        refresh: Ignore a cached choice and time again.

    Returns:
        The winner; the first candidate (float32) if nothing beats it.
    """
    device_type = images.device.type
    if candidates is None:
        candidates = candidate_settings(device_type, try_compile=try_compile)
    cache_file = cache_file or cache_dir() / "tuning.json"
    entry = f"{host_name(images.device)}|{key}|{mode}|{tuple(images.shape)}|{torch.__version__}"
    doc = _load(cache_file)
    if not refresh and entry in doc:
        cached = SpeedSettings(**doc[entry]["settings"])
        if cached in candidates:
            return cached
    timings = time_candidates(model, images, candidates, mode=mode, steps=steps)
    for seconds, settings in timings:
        log.info("speed trial %s: %.4fs/step %s", mode, seconds, settings.to_dict())
    best = min(timings, key=lambda t: t[0])[1] if timings else candidates[0]
    doc[entry] = {
        "settings": best.to_dict(),
        "timings": [{"seconds": s, **c.to_dict()} for s, c in timings],
    }
    atomic_write(cache_file, json.dumps(doc, indent=1))
    return best
