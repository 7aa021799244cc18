"""Classification metrics as pure functions of predictions and targets (no I/O).

Inputs may be torch tensors, numpy arrays or lists. Ill-defined ratios follow scikit-learn's
``zero_division=0`` convention: a class that is never predicted has precision 0, a class absent from
the targets has recall (per-class accuracy) 0, and F1 is 0 when precision and recall are both 0.
``macro_f1`` averages over the classes that occur in the targets or the predictions, like
``sklearn.metrics.f1_score(average="macro", zero_division=0)``, so a class missing from a small
validation split and never predicted does not pull the mean down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "accuracy",
    "confusion_matrix",
    "macro_f1",
    "per_class_accuracy",
    "precision_recall_f1",
    "summarize",
    "top_k_accuracy",
]

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


def per_class_accuracy(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> np.ndarray:
    """Accuracy within each true class (its recall); 0.0 for classes absent from the targets."""
    return precision_recall_f1(preds, targets, num_classes)[1]


def macro_f1(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> float:
    """Unweighted mean F1 over the classes present in the targets or the predictions."""
    p, t = _pair(preds, targets)
    if not t.size:
        return 0.0
    f1 = precision_recall_f1(p, t, num_classes)[2]
    present = np.union1d(np.unique(p), np.unique(t))
    return float(f1[present].mean())


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
