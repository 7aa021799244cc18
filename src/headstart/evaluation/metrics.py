"""Classification metrics as pure functions of predictions and targets (no I/O).

Inputs may be torch tensors, numpy arrays or lists. Ill-defined ratios follow scikit-learn's
``zero_division=0`` convention: a class that is never predicted has precision 0, a class absent from
the targets has recall (per-class accuracy) 0, and F1 is 0 when precision and recall are both 0.
``macro_f1`` averages over the classes that occur in the targets or the predictions, like
``sklearn.metrics.f1_score(average="macro", zero_division=0)``, so a class missing from a small
validation split and never predicted does not pull the mean down.

Calibration uses the top-1 confidence (probability of the predicted class) and equal-width bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "ECE_BINS",
    "Calibration",
    "accuracy",
    "balanced_accuracy",
    "calibration_bins",
    "confusion_matrix",
    "expected_calibration_error",
    "macro_f1",
    "normalize_rows",
    "precision_recall_f1",
    "summarize",
    "top_confused_pairs",
    "top_k_accuracy",
    "weighted_f1",
]

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error."""

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _labels(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _pair(preds: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _labels(preds), _labels(targets)
    if p.shape != t.shape:
        raise ValueError(f"preds ({p.size}) and targets ({t.size}) differ in length")
    return p, t


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def accuracy(preds: ArrayLike, targets: ArrayLike) -> float:
    """Fraction of predictions equal to the targets (0.0 for no samples)."""
    p, t = _pair(preds, targets)
    return float((p == t).mean()) if t.size else 0.0


def top_k_accuracy(logits: torch.Tensor | np.ndarray, targets: ArrayLike, k: int = 5) -> float:
    """Fraction of samples whose target is among the ``k`` highest scores."""
    scores = torch.as_tensor(logits).detach().cpu()
    t = torch.from_numpy(_labels(targets))
    if t.numel() == 0:
        return 0.0
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return float((top == t[:, None]).any(dim=1).float().mean())


def confusion_matrix(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class, shape ``[C, C]``."""
    p, t = _pair(preds, targets)
    if p.size and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def precision_recall_f1(
    preds: ArrayLike, targets: ArrayLike, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support (``zero_division=0``)."""
    cm = confusion_matrix(preds, targets, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    precision = _ratio(tp, cm.sum(axis=0).astype(np.float64))
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def macro_f1(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> float:
    """Unweighted mean F1 over the classes present in the targets or the predictions."""
    p, t = _pair(preds, targets)
    if not t.size:
        return 0.0
    f1 = precision_recall_f1(p, t, num_classes)[2]
    present = np.union1d(np.unique(p), np.unique(t))
    return float(f1[present].mean())


def weighted_f1(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> float:
    """Mean F1 over classes weighted by their support (0.0 for no samples)."""
    _, _, f1, support = precision_recall_f1(preds, targets, num_classes)
    total = support.sum()
    return float((f1 * support).sum() / total) if total else 0.0


def balanced_accuracy(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> float:
    """Mean recall over the classes present in the targets (0.0 for no samples)."""
    _, recall, _, support = precision_recall_f1(preds, targets, num_classes)
    present = support > 0
    return float(recall[present].mean()) if present.any() else 0.0


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Divide each row of a confusion matrix by its sum (rows of zeros stay zero)."""
    cm = np.asarray(cm, dtype=np.float64)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def top_confused_pairs(
    cm: np.ndarray, classes: Sequence[str], k: int = 20
) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells as ``(true name, predicted name, count)``."""
    off = np.asarray(cm, dtype=np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    rows, cols = np.unravel_index(flat, off.shape)
    return [(classes[i], classes[j], int(off[i, j])) for i, j in zip(rows, cols) if off[i, j] > 0]


@dataclass(frozen=True)
class Calibration:
    """Equal-width confidence bins and the expected calibration error.

    Attributes:
        edges: ``n_bins + 1`` bin edges over [0, 1]; a bin holds ``edges[i] < c <= edges[i + 1]``
            (the first bin also holds 0).
        counts: Predictions per bin.
        accuracy: Fraction correct per bin (0 for empty bins).
        confidence: Mean confidence per bin (0 for empty bins).
        ece: ``sum(counts / N * |accuracy - confidence|)``.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def calibration_bins(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> Calibration:
    """Bin predictions by confidence and compute the expected calibration error (ECE)."""
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != hit.shape:
        raise ValueError(f"confidences ({conf.size}) and correct ({hit.size}) differ in length")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    safe = np.maximum(counts, 1)
    accuracy = np.bincount(index, weights=hit, minlength=n_bins) / safe
    confidence = np.bincount(index, weights=conf, minlength=n_bins) / safe
    total = max(int(conf.size), 1)
    ece = float(np.sum(counts / total * np.abs(accuracy - confidence)))
    return Calibration(edges, counts, accuracy, confidence, ece)


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins (0 is perfectly calibrated)."""
    return calibration_bins(confidences, correct, n_bins).ece


def summarize(
    logits: torch.Tensor | np.ndarray, targets: ArrayLike, class_names: Sequence[str]
) -> dict[str, Any]:
    """All classification metrics of one evaluation as a JSON-friendly dict.

    Returns:
        ``num_samples``, ``acc``, ``macro_f1``, ``top5`` (only with more than 5 classes),
        ``per_class`` (name → accuracy, precision, recall, f1, support), ``classes`` and
        ``confusion_matrix`` (nested lists, rows = true class, columns = predicted class).
    """
    scores = torch.as_tensor(logits).detach().cpu()
    num_classes = len(class_names)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ValueError(
            f"logits of shape {tuple(scores.shape)} do not match {num_classes} classes"
        )
    preds = scores.argmax(dim=1).numpy()
    t = _labels(targets)
    precision, recall, f1, support = precision_recall_f1(preds, t, num_classes)
    result: dict[str, Any] = {
        "num_samples": int(t.size),
        "acc": accuracy(preds, t),
        "macro_f1": macro_f1(preds, t, num_classes),
    }
    if num_classes > 5:
        result["top5"] = top_k_accuracy(scores, t, 5)
    result["per_class"] = {
        name: {
            "accuracy": float(recall[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    result["classes"] = list(class_names)
    result["confusion_matrix"] = confusion_matrix(preds, t, num_classes).tolist()
    return result
