"""Speed settings (channels_last, bf16/fp16 autocast, torch.compile) chosen by a short timed trial.

The fastest combination differs by model and machine, so :func:`tune_speed` times a few steps of
each candidate on a real batch (forward + backward for training, forward under
``torch.inference_mode`` for inference) and remembers the winner per host and model in
``cache_dir()/tuning.json``. The trial leaves the model as it found it: weights, buffers (BatchNorm
running statistics), gradients, memory format and train/eval mode are restored.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headstart.errors import ConfigError
from headstart.paths import cache_dir

__all__ = [
    "SpeedSettings",
    "candidate_settings",
    "describe",
    "has_depthwise",
    "host_name",
    "keep_freed_memory",
    "set_float32_depthwise",
    "time_candidates",
    "time_settings",
    "training_candidates",
    "tune_speed",
]

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
        return torch.compile(model) if self.compile else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """Convert a batch of images to the memory format."""
        return (
            images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


_FLOAT32_CLASSES: dict[type, type] = {}


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


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_KEEP_LOCK = threading.Lock()
_keep_depth = 0


@functools.cache
def _glibc() -> Any:
    """glibc through ctypes, or None on other C libraries and systems."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """While active, glibc's malloc keeps freed memory for reuse instead of returning it.

    By default glibc serves large blocks (activations, gradients) with fresh ``mmap`` pages and
    unmaps them when freed, so every training step page-faults its whole working set again; on
    the 2-core CPU this cost 20-35% of a training step of EfficientNet-Lite0 at 96 px
    (benchmarks/train_speed.py). Inside this context large blocks come from the heap and freed
    memory stays in the process for the next step (the process keeps its peak memory, as
    with jemalloc or tcmalloc). On leaving, glibc's default limits are set again and the kept
    memory is trimmed; glibc's dynamic mmap threshold stays off after that (any ``mallopt``
    call turns it off), so later large blocks of the process are always mmapped. Re-entrant;
    a no-op (yields False) without glibc or when the user tuned malloc through ``MALLOC_*``
    environment variables. The headstart commands and ``fit_run`` enter it; library calls for
    prediction leave the allocator alone.
    """
    global _keep_depth
    libc = _glibc()
    if libc is None or any(k in os.environ for k in _USER_MALLOC_SETTINGS):
        yield False
        return
    with _KEEP_LOCK:
        if _keep_depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        _keep_depth += 1
    try:
        yield True
    finally:
        with _KEEP_LOCK:
            _keep_depth -= 1
            if _keep_depth == 0:
                for option, value in _GLIBC_DEFAULTS.items():
                    libc.mallopt(option, value)
                libc.malloc_trim(0)


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
        runnable: dict[SpeedSettings, tuple[Callable[..., Any], torch.Tensor]] = {}
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
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, cache_file)
    return best
