"""Evaluate a loaded model on labelled samples: accuracy, macro-F1, per-class accuracy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from headstart.artifact import LoadedModel
from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample
from headstart.data.transforms import build_eval_transform
from headstart.errors import DataError
from headstart.metrics import summarize

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

    Raises:
        DataError: There are no samples to evaluate.
    """
    if not samples:
        raise DataError("no labelled images to evaluate; check the data folder's class folders.")
    dataset = ImageDataset(samples, build_eval_transform(loaded.preprocessing))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    model = loaded.model.eval()
    device = next(model.parameters()).device
    outs, targets = [], []
    with torch.inference_mode():
        for images, labels in loader:
            outs.append(model(images.to(device)).float().cpu())
            targets.append(labels)
    logits, target = torch.cat(outs), torch.cat(targets)
    metrics = summarize(logits, target, list(loaded.classes))
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, target))
    metrics["num_images"] = len(samples)
    return EvalResult(
        metrics=metrics, logits=logits, targets=target, paths=tuple(s.path for s in samples)
    )


def save_eval_json(
    result: EvalResult, path: str | Path, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write the metrics (and ``extra`` context such as model and data) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**(extra or {}), "metrics": result.metrics}
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
    return path
