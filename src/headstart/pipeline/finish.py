"""After training: what the model folder records, the test metrics, the run's report."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.config import BnStats, TrainConfig
from headstart.pipeline.notes import Notes
from headstart.pipeline.recipe import effective_batch_size
from headstart.run_folder import RunFolder

if TYPE_CHECKING:
    from headstart.artifact import LoadedModel
    from headstart.data.folders import DataSplits, Sample
    from headstart.data.image_store import DecodedImageCache
    from headstart.evaluation.result import EvalResult
    from headstart.training.engine import TrainResult

__all__ = [
    "data_fingerprint",
    "model_meta",
    "note_budget",
    "note_speed",
    "test_metrics",
    "write_run_report",
]


def data_fingerprint(classes: tuple[str, ...], samples: Sequence[Sample]) -> str:
    """A short hash of class names and (file name, size, label) of every sample."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for s in sorted(samples, key=lambda s: s.path):
        try:
            size = os.stat(s.path).st_size
        except OSError:
            size = -1
        digest.update(f"{Path(s.path).name}\0{size}\0{s.label}\n".encode())
    return digest.hexdigest()[:16]


def model_meta(
    config: TrainConfig,
    splits: DataSplits,
    result: TrainResult,
    best: dict[str, Any],
    test_metrics: dict[str, Any] | None,
    *,
    processes: int = 1,
) -> dict[str, Any]:
    """What ``headstart.json`` records about the training, beyond the architecture."""
    from headstart.config import Strategy

    classes = tuple(splits.classes)
    partial = config.strategy is Strategy.PARTIAL
    return {
        "strategy": config.strategy.value,
        "bn_stats": BnStats(config.bn_stats).value,
        "unfreeze_stages": config.unfreeze_stages if partial else None,
        "best_epoch": result.best_epoch,
        "ema_weights": result.ema_used,
        "metrics": {"val": best, "test": test_metrics},
        "data_hash": data_fingerprint(classes, list(splits.train) + list(splits.val)),
        "images": {k: len(getattr(splits, k)) for k in ("train", "val", "test")},
        "processes": processes,
        "effective_batch_size": effective_batch_size(config, processes),
    }


def note_speed(
    result: TrainResult, image_phases: list[str], config: TrainConfig, notes: Notes
) -> None:
    """Tell the user how each image phase ran (chosen by a timed trial under --precision auto)."""
    from headstart.speed.settings import SpeedSettings, describe

    speed = {name: s for name, s in result.speed.items() if name in image_phases}
    if not speed:
        return
    how = ", ".join(f"{name} phase {describe(SpeedSettings(**s))}" for name, s in speed.items())
    if config.precision == "auto":
        notes.add(f"speed: {how} (the fastest in a timed trial on this machine; --precision "
                  "32-true turns autocast off)")  # fmt: skip
    else:
        notes.add(f"speed: {how}, precision {config.precision}")


def test_metrics(
    loaded: LoadedModel,
    splits: DataSplits,
    batch_size: int,
    images: DecodedImageCache | None = None,
) -> tuple[dict[str, Any] | None, EvalResult | None]:
    """Evaluate on the test split, else on the validation split (cropped from ``images``, the
    run's decoded-image store entry, when it holds them).

    Returns:
        The test metrics (None without a test split) and the evaluation the run's report shows.
    """
    from headstart.inference.evaluate import evaluate_samples

    samples = splits.test or splits.val
    if not samples:
        return None, None
    result = evaluate_samples(loaded, samples, batch_size=batch_size, images=images)
    if not splits.test:
        return None, result
    keys = ("acc", "macro_f1", "loss", "top5", "num_images")
    return {k: result.metrics[k] for k in keys if k in result.metrics}, result


def write_run_report(run: RunFolder, result: EvalResult | None, splits: DataSplits) -> None:
    """Write the evaluation report (HTML, Markdown, CSV, pictures) into the run's report folder."""
    if result is None:
        return
    from headstart.evaluation.report import write_report

    split = "test" if splits.test else "validation (also used to pick the best epoch)"
    write_report(
        run.report_dir, result, splits.classes, history=run.read_history(),
        lr_trace=run.read_lr_trace(),
        config=run.read_config_doc(), data_summary=splits, skipped=run.skipped_files(),
        title=f"{run.path.name}: {split} split",
    )  # fmt: skip


def note_budget(budget: str, started: float, notes: Notes) -> None:
    """How the run kept to its ``--budget``: the whole command's time so far, against it."""
    import time

    from headstart.config import parse_duration

    total, took = parse_duration(budget), time.monotonic() - started
    notes.add(f"budget {budget}: the command took {took:.0f}s of {total:.0f}s ({took / total:.0%})")
