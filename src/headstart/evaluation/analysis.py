"""What the evaluation report says, derived once from an EvalResult (pure: no I/O).

:func:`analyse` turns logits and targets into per-sample arrays (prediction, top-1 confidence,
cross-entropy loss) and the full metrics; the row builders and :func:`report_doc` turn that into
the tables and the ``metrics.json`` document, which :mod:`headstart.evaluation.report` writes and
:mod:`headstart.evaluation.render` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headstart.data.folders import DataSplits
from headstart.evaluation.metrics import (
    Calibration,
    balanced_accuracy,
    calibration_bins,
    summarize,
    top_confused_pairs,
    weighted_f1,
)
from headstart.evaluation.result import EvalResult

__all__ = [
    "Analysis",
    "DataCounts",
    "HistoryRow",
    "Skipped",
    "analyse",
    "misclassified_rows",
    "per_class_rows",
    "report_doc",
    "summarize_data",
    "training_summary",
]

HistoryRow = Mapping[str, str | float]
"""One epoch of ``metrics.csv`` (values as read by ``csv``: strings, or numbers)."""
DataCounts = Mapping[str, Sequence[int] | Mapping[str, int]]
"""Images per class per split: ``{split: counts in label order or {class: count}}``."""
Skipped = str | Path | tuple[str | Path, str]
"""A file left out of the data: its path, or ``(path, reason)``."""

PER_CLASS_KEYS = ("precision", "recall", "f1", "support", "accuracy")
MISCLASSIFIED_KEYS = ("path", "true", "predicted", "confidence", "loss")


@dataclass(frozen=True)
class Analysis:
    """Per-sample arrays and summaries derived once from an EvalResult.

    Attributes:
        classes: Class names in label order.
        targets: True label per sample.
        preds: Predicted label per sample.
        confidence: Probability of the predicted class per sample.
        losses: Cross-entropy loss per sample.
        paths: The image files (empty when the result has none).
        cm: Confusion matrix, rows = true class.
        metrics: The summary plus weighted F1, balanced accuracy, loss, image count and ECE.
        calibration: Confidence bins of the top-1 predictions.
        pairs: The most confused ``(true, predicted, count)`` pairs, largest first.
    """

    classes: tuple[str, ...]
    targets: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray
    losses: np.ndarray
    paths: tuple[str, ...]
    cm: np.ndarray
    metrics: dict[str, Any]
    calibration: Calibration
    pairs: list[tuple[str, str, int]]


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values)


def analyse(result: EvalResult, classes: Sequence[str]) -> Analysis:
    """Derive everything the report shows from ``result`` (metrics missing from it are computed)."""
    logits = _numpy(result.logits).astype(np.float64)
    targets = _numpy(result.targets).astype(np.int64).reshape(-1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    preds = logits.argmax(axis=1)
    confidence = np.exp(log_probs.max(axis=1))
    losses = -log_probs[np.arange(len(targets)), targets]
    calibration = calibration_bins(confidence, preds == targets)
    metrics = dict(result.metrics)
    if "per_class" not in metrics or "confusion_matrix" not in metrics:
        metrics.update(summarize(logits, targets, list(classes)))
    metrics["weighted_f1"] = weighted_f1(preds, targets, len(classes))
    metrics["balanced_acc"] = balanced_accuracy(preds, targets, len(classes))
    metrics.setdefault("loss", float(losses.mean()) if losses.size else 0.0)
    metrics.setdefault("num_images", int(targets.size))
    metrics["ece"] = calibration.ece
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    return Analysis(tuple(classes), targets, preds, confidence, losses, tuple(result.paths), cm,
                    metrics, calibration, top_confused_pairs(cm, classes))  # fmt: skip


def per_class_rows(analysis: Analysis) -> list[dict[str, str | float | int]]:
    """One row per class: its name, then ``PER_CLASS_KEYS``."""
    per_class = analysis.metrics["per_class"]
    return [
        {"class": name, **{k: per_class[name][k] for k in PER_CLASS_KEYS}}
        for name in analysis.classes
    ]


def misclassified_rows(analysis: Analysis) -> list[dict[str, str | float]]:
    """One row per wrong prediction (``MISCLASSIFIED_KEYS``), highest loss first."""
    wrong = np.flatnonzero(analysis.preds != analysis.targets)
    wrong = wrong[np.argsort(-analysis.losses[wrong], kind="stable")]
    names = analysis.classes
    return [
        {
            "path": analysis.paths[i] if analysis.paths else "",
            "true": names[analysis.targets[i]],
            "predicted": names[analysis.preds[i]],
            "confidence": round(float(analysis.confidence[i]), 6),
            "loss": round(float(analysis.losses[i]), 6),
        }
        for i in wrong
    ]


def summarize_data(
    data_summary: DataSplits | DataCounts | None, classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Images per class per split, from a DataSplits or ``{split: counts}``.

    Counts may be a list in label order or a ``{class: count}`` mapping.
    """
    if data_summary is None:
        return {}
    counts: DataCounts = (
        data_summary.counts() if isinstance(data_summary, DataSplits) else data_summary
    )
    out: dict[str, dict[str, int]] = {}
    for split, values in counts.items():
        if isinstance(values, Mapping):
            out[split] = {str(c): int(v) for c, v in values.items()}
        else:
            out[split] = {c: int(v) for c, v in zip(classes, values)}
    return out


def training_summary(history: Sequence[HistoryRow]) -> dict[str, dict[str, float]]:
    """Loss, accuracy (and F1) of the last epoch for train and val, from ``metrics.csv`` rows."""
    if not history:
        return {}
    last = history[-1]
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "val"):
        values = {
            name: float(last[f"{split}_{name}"])
            for name in ("loss", "acc", "f1")
            if last.get(f"{split}_{name}") not in (None, "")
        }
        if values:
            out[split] = {"epoch": float(last.get("epoch", len(history))), **values}
    return out


def _normalise_skipped(skipped: Sequence[Skipped] | None) -> list[dict[str, str]]:
    out = []
    for item in skipped or ():
        if isinstance(item, (tuple, list)) and len(item) == 2:
            out.append({"path": str(item[0]), "reason": str(item[1])})
        else:
            out.append({"path": str(item), "reason": ""})
    return out


def report_doc(
    analysis: Analysis,
    *,
    title: str,
    history: Sequence[HistoryRow] = (),
    config: Mapping[str, Any] | None = None,
    data_summary: DataSplits | DataCounts | None = None,
    skipped: Sequence[Skipped] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` document: ``extra`` first, then the report's sections.

    The arguments are those of :func:`headstart.evaluation.report.write_report`.
    """
    cal = analysis.calibration
    return {
        **(extra or {}),
        "title": title,
        "metrics": analysis.metrics,
        "calibration": {
            "bins": len(cal.counts),
            "ece": cal.ece,
            "edges": cal.edges.tolist(),
            "counts": cal.counts.tolist(),
            "accuracy": cal.accuracy.tolist(),
            "confidence": cal.confidence.tolist(),
        },
        "top_confused_pairs": [
            {"true": t, "predicted": p, "count": c} for t, p, c in analysis.pairs
        ],
        "num_misclassified": int((analysis.preds != analysis.targets).sum()),
        "data": summarize_data(data_summary, analysis.classes),
        "skipped": _normalise_skipped(skipped),
        "config": dict(config) if config is not None else None,
        "training": training_summary(history),
    }
