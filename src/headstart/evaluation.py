"""Evaluate a loaded model on labelled samples: accuracy, macro-F1, per-class accuracy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from headstart.artifact import LoadedModel
from headstart.data.folders import Sample
from headstart.errors import DataError
from headstart.metrics import summarize
from headstart.prediction import logits_for_files

__all__ = ["EvalResult", "evaluate_samples", "save_eval_json"]


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one evaluation, plus raw outputs for reports."""

    metrics: dict[str, Any]
    logits: torch.Tensor
    targets: torch.Tensor
    paths: tuple[str, ...]


def evaluate_samples(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
) -> EvalResult:
    """Run the model over ``samples`` and summarise the predictions.

    Files that cannot be read are left out (never replaced by another image) and listed under
    ``metrics["skipped"]``; ``metrics["num_images"]`` counts the images actually scored.
    ``num_workers`` is accepted for compatibility; decoding overlaps inference in a thread.

    Raises:
        DataError: There are no samples, or none of them could be read.
    """
    if not samples:
        raise DataError("no labelled images to evaluate; check the data folder's class folders.")
    labels = {s.path: s.label for s in samples}
    good, logits, bad = logits_for_files(loaded, [s.path for s in samples], batch_size=batch_size)
    if not good:
        raise DataError(
            f"none of the {len(samples)} images could be read (first: {bad[0][0]}: {bad[0][1]})."
        )
    target = torch.tensor([labels[p] for p in good])
    metrics = summarize(logits, target, list(loaded.classes))
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, target))
    metrics["num_images"] = len(good)
    metrics["skipped"] = [{"path": p, "reason": r} for p, r in bad]
    return EvalResult(metrics=metrics, logits=logits, targets=target, paths=tuple(good))


def save_eval_json(
    result: EvalResult, path: str | Path, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write the metrics (and ``extra`` context such as model and data) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**(extra or {}), "metrics": result.metrics}
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
    return path
