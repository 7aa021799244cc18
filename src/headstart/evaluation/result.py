"""The outcome of one evaluation: metrics and the raw outputs the report is drawn from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from headstart.files import atomic_write

__all__ = ["EvalResult", "save_eval_json"]


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one evaluation, plus raw outputs for reports.

    Attributes:
        metrics: The summary (see :func:`headstart.evaluation.metrics.summarize`), with ``loss``,
            ``num_images`` and ``skipped`` (files left out, with reasons).
        logits: (N, num_classes) float32 outputs of the scored images.
        targets: (N,) true labels.
        paths: The scored image files, in the order of ``logits``.
    """

    metrics: dict[str, Any]
    logits: torch.Tensor
    targets: torch.Tensor
    paths: tuple[str, ...]


def save_eval_json(
    result: EvalResult, path: str | Path, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write the metrics (and ``extra`` context such as model and data) as JSON."""
    doc = {**(extra or {}), "metrics": result.metrics}
    return atomic_write(path, json.dumps(doc, indent=2, default=float) + "\n")
