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

from headstart.config import BnStats, TrainConfig, parse_duration
from headstart.pipeline.budget import SIZES, BudgetPlan, Speeds, Workload, plan_budget
from headstart.pipeline.notes import Notes

if TYPE_CHECKING:
    from lightning_fabric import Fabric
    from torch import nn

    from headstart.data.folders import DataSplits
    from headstart.zoo.spec import BackboneSpec

__all__ = ["apply_budget", "measure_speeds"]

PLANNED = ("image_size", "strategy", "epochs", "head_epochs", "batch_size")
"""Settings the planner decides when the user did not set them."""
STEP_EFFICIENCY = 1.0
"""Training epochs run at about this fraction of the timed forward + backward speed (data loading,
augmentation and the optimizer step cost about what the short timing overstates): in epochs 207,
128 and 86 img/s at 64, 96 and 128 px, timed 216, 117 and 78 (EfficientNet-Lite0, batch 32)."""
ANCHOR = 128
"""The second image size timed (or the largest candidate below it)."""
_DECODE_SAMPLE = 24


def measure_speeds(
    fabric: Fabric,
    model: nn.Module,
    sizes: Sequence[int],
    samples: Sequence[str],
    *,
    batch_size: int = 32,
    bn: BnStats = BnStats.PRETRAINED,
) -> Speeds:
    """Training and inference images/s at the ends of ``sizes``; decoding images/s.

    At the smallest size every setting the speed trial would try is timed and the fastest kept
    (the trial picks it again in training); a second size, the largest up to ``ANCHOR`` px, is
    timed with that setting only. Larger sizes are extrapolated (cheaper than timing them, and
    timing a large size with a handful of steps was less accurate here than extrapolating).
    """
    import torch

    from headstart.speed.depthwise import has_depthwise
    from headstart.speed.settings import prefers_channels_last
    from headstart.speed.trial import time_candidates, training_candidates
    from headstart.surgery import train_mode

    model.to(fabric.device)
    device = fabric.device.type
    candidates = training_candidates(
        device, conv=prefers_channels_last(model), depthwise=has_depthwise(model)
    )
    small = min(sizes)
    large = max([s for s in sizes if s <= ANCHOR] or [small])
    train, infer = {}, {}
    modes = {m: m.training for m in model.modules()}
    train_mode(model, bn=bn)  # norm layers in the modes the training loop puts them in
    for size in sorted({small, large}):
        x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
        x = x.to(fabric.device)
        timed = time_candidates(model, x, candidates, mode="train", steps=3)
        step, best = min(timed, key=lambda t: t[0])
        candidates = [best]  # the larger size: the winner only
        (forward, _), = time_candidates(model, x, candidates, mode="infer", steps=2)
        train[size] = STEP_EFFICIENCY * batch_size / step
        infer[size] = batch_size / forward
    for module, training in modes.items():
        module.training = training
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
    if sample:
        decode_image(sample[0])  # the first decode loads the codecs
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
    batch = int(fixed.get("batch_size") or config.batch_size)
    speeds = measure_speeds(fabric, model, sizes, [s.path for s in splits.train],
                            batch_size=batch, bn=config.bn_stats)  # fmt: skip
    work = Workload(len(splits.train), len(splits.val), len(splits.test or splits.val))
    left = budget - (time.monotonic() - started)
    plan = plan_budget(left, work, speeds, model_size=model_size, fixed=fixed, sizes=sizes,
                       budget=budget)  # fmt: skip
    chosen = {k: v for k, v in plan.settings().items() if k not in fixed}
    if chosen.get("strategy") == "feature-extract":
        chosen.pop("head_epochs", None)
    notes.add(plan.describe())
    return config.replace(**chosen), {**origin, **dict.fromkeys(chosen, "budget")}, plan
