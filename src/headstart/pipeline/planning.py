"""Plan a run to its ``--budget``: time the model here, then let the planner choose.

:func:`measure_speeds` times two training steps and two forward passes of the model at the
smallest and the largest candidate image size (float32, channels-last for convolutional
networks: the speed trial may later find a faster setting, so the estimates err towards
finishing early), times decoding a few images, and interpolates between the two sizes on a
log-log scale. :func:`apply_budget` turns the plan into settings whose origin is ``budget``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from headstart.config import TrainConfig, parse_duration
from headstart.pipeline.budget import SIZES, BudgetPlan, Speeds, Workload, plan_budget
from headstart.pipeline.notes import Notes

if TYPE_CHECKING:
    from lightning.fabric import Fabric
    from torch import nn

    from headstart.data.folders import DataSplits
    from headstart.zoo.spec import BackboneSpec

__all__ = ["apply_budget", "measure_speeds"]

PLANNED = ("image_size", "strategy", "epochs", "head_epochs", "batch_size")
"""Settings the planner decides when the user did not set them."""
STEP_EFFICIENCY = 0.8
"""A training epoch runs at about this fraction of the bare forward + backward speed (data
loading, augmentation, the optimizer step): 135 img/s in epochs against 162 bare at 96 px here."""
_TIMED_BATCH = 16
_DECODE_SAMPLE = 24


def measure_speeds(
    fabric: Fabric, model: nn.Module, sizes: Sequence[int], samples: Sequence[str]
) -> Speeds:
    """Training and inference images/s at the ends of ``sizes``; decoding images/s."""
    import torch

    from headstart.speed.settings import SpeedSettings, prefers_channels_last
    from headstart.speed.trial import time_candidates

    model.to(fabric.device)
    settings = SpeedSettings(fabric.device.type, channels_last=prefers_channels_last(model))
    ends = sorted({min(sizes), max(sizes)})
    train, infer = {}, {}
    for size in ends:
        x = torch.randn(_TIMED_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
        x = x.to(fabric.device)
        (step, _), = time_candidates(model, x, [settings], mode="train", steps=2)
        (forward, _), = time_candidates(model, x, [settings], mode="infer", steps=2)
        train[size] = STEP_EFFICIENCY * _TIMED_BATCH / step
        infer[size] = _TIMED_BATCH / forward
    return Speeds(_interpolate(train), _interpolate(infer), _decode_rate(samples))


def _interpolate(rates: dict[int, float]) -> Callable[[int], float]:
    """Images/s at any size from two measured sizes, a straight line on a log-log scale."""
    (a, ra), (b, rb) = sorted(rates.items())[0], sorted(rates.items())[-1]
    slope = 0.0 if a == b else (math.log(rb) - math.log(ra)) / (math.log(b) - math.log(a))
    return lambda size: ra * (size / a) ** slope


def _decode_rate(paths: Sequence[str]) -> float:
    """Images/s of decoding and resizing into the decoded-image cache (a sample, timed)."""
    from headstart.data.images import decode_image

    sample = list(paths)[:_DECODE_SAMPLE]
    start = time.perf_counter()
    for path in sample:
        decode_image(path).resize((96, 96))
    elapsed = time.perf_counter() - start
    return len(sample) / elapsed if sample and elapsed > 0 else 1000.0


def apply_budget(
    config: TrainConfig,
    origin: dict[str, str],
    *,
    fabric: Fabric,
    model: nn.Module,
    spec: BackboneSpec,
    splits: DataSplits,
    notes: Notes,
    started: float,
) -> tuple[TrainConfig, dict[str, str], BudgetPlan]:
    """The run's settings planned to fit ``config.budget``; the user's explicit settings win.

    Args:
        started: ``time.monotonic()`` when the command began (the budget counts from there).
    """
    budget = parse_duration(str(config.budget))
    model_size = spec.preprocessing.input_size
    fixed = {k: getattr(config, k) for k in PLANNED if origin.get(k) in ("cli", "file")}
    if "strategy" in fixed:
        fixed["strategy"] = config.strategy.value
    sizes = [fixed["image_size"]] if "image_size" in fixed else [
        s for s in SIZES if s <= model_size
    ] or [model_size]  # fmt: skip
    speeds = measure_speeds(fabric, model, sizes, [s.path for s in splits.train])
    work = Workload(len(splits.train), len(splits.val), len(splits.test or splits.val))
    left = budget - (time.monotonic() - started)
    plan = plan_budget(left, work, speeds, model_size=model_size, fixed=fixed, sizes=sizes,
                       budget=budget)  # fmt: skip
    chosen = {k: v for k, v in plan.settings().items() if k not in fixed}
    if chosen.get("strategy") == "feature-extract":
        chosen.pop("head_epochs", None)
    notes.add(plan.describe())
    return config.replace(**chosen), {**origin, **dict.fromkeys(chosen, "budget")}, plan
