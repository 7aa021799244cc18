"""Predict labels for image files with a loaded model, using the one decode function."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError, DataError

__all__ = ["Prediction", "predict_files", "predict_proba_files"]


@dataclass(frozen=True)
class Prediction:
    """Top-k labels of one image, best first; ``error`` is set instead when it could not be read."""

    path: str
    labels: tuple[str, ...] = ()
    probs: tuple[float, ...] = ()
    error: str | None = None
    indices: tuple[int, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        top = [{"label": lab, "prob": round(p, 6)} for lab, p in zip(self.labels, self.probs)]
        return {"path": self.path, "top": top}


def _batches(
    paths: Sequence[str | Path], loaded: LoadedModel, batch_size: int
) -> Iterator[tuple[list[str], torch.Tensor | None, list[tuple[str, str]]]]:
    """Yield (good paths, stacked tensors, [(bad path, reason)]) per batch of paths."""
    for start in range(0, len(paths), batch_size):
        good: list[str] = []
        tensors: list[torch.Tensor] = []
        bad: list[tuple[str, str]] = []
        for path in paths[start : start + batch_size]:
            try:
                tensors.append(image_to_tensor(path, loaded.preprocessing))
                good.append(str(path))
            except DataError as exc:
                bad.append((str(path), str(exc)))
        yield good, (torch.stack(tensors) if tensors else None), bad


def predict_proba_files(
    loaded: LoadedModel, paths: Sequence[str | Path], *, batch_size: int = 32
) -> tuple[list[str], torch.Tensor, list[tuple[str, str]]]:
    """Class probabilities for each readable file.

    Returns:
        The readable paths, their probabilities (N, num_classes), and (path, reason) for the others.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}.")
    model = loaded.model.eval()
    device = next(model.parameters()).device
    good_all: list[str] = []
    probs: list[torch.Tensor] = []
    bad_all: list[tuple[str, str]] = []
    with torch.inference_mode():
        for good, batch, bad in _batches(paths, loaded, batch_size):
            bad_all.extend(bad)
            if batch is None:
                continue
            logits = model(batch.to(device))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            good_all.extend(good)
    stacked = torch.cat(probs) if probs else torch.empty(0, len(loaded.classes))
    return good_all, stacked, bad_all


def predict_files(
    loaded: LoadedModel, paths: Sequence[str | Path], *, topk: int = 5, batch_size: int = 32
) -> list[Prediction]:
    """Top-k predictions for each file, in the order given; unreadable files carry ``error``."""
    if topk < 1:
        raise ConfigError(f"--topk must be at least 1, got {topk}.")
    good, probs, bad = predict_proba_files(loaded, paths, batch_size=batch_size)
    k = min(topk, len(loaded.classes))
    by_path: dict[str, Prediction] = {}
    if len(good):
        values, indices = probs.topk(k, dim=1)
        for path, vals, idx in zip(good, values.tolist(), indices.tolist()):
            by_path[path] = Prediction(
                path=path,
                labels=tuple(loaded.classes[i] for i in idx),
                probs=tuple(float(v) for v in vals),
                indices=tuple(idx),
            )
    for path, reason in bad:
        by_path[path] = Prediction(path=path, error=reason)
    return [by_path[str(p)] for p in paths]
