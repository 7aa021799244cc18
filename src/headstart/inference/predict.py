"""Predict labels for image files with a loaded model, using the one decode function."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError, DataError
from headstart.speed.settings import prefers_channels_last

__all__ = ["Prediction", "logits_for_files", "predict_files", "predict_proba_files"]


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


def _prefetched(iterator: Iterator[Any]) -> Iterator[Any]:
    """Produce the next item in a background thread while the caller works on the current one.

    Decoding (PIL) releases the GIL, so decoding batch k+1 overlaps the forward pass of batch k.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="headstart-decode") as pool:
        future = pool.submit(next, iterator, None)
        while (item := future.result()) is not None:
            future = pool.submit(next, iterator, None)
            yield item


def logits_for_files(
    loaded: LoadedModel, paths: Sequence[str | Path], *, batch_size: int = 32
) -> tuple[list[str], torch.Tensor, list[tuple[str, str]]]:
    """Raw model outputs for each readable file; decoding overlaps the forward pass.

    Returns:
        The readable paths, their logits (N, num_classes), and (path, reason) for the others.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}.")
    model = loaded.model.eval()
    layout = torch.channels_last if prefers_channels_last(model) else torch.contiguous_format
    model = model.to(memory_format=layout)
    device = next(model.parameters()).device
    good_all: list[str] = []
    outputs: list[torch.Tensor] = []
    bad_all: list[tuple[str, str]] = []
    with torch.inference_mode():
        for good, batch, bad in _prefetched(_batches(paths, loaded, batch_size)):
            bad_all.extend(bad)
            if batch is None:
                continue
            outputs.append(model(batch.to(device, memory_format=layout)).float().cpu())
            good_all.extend(good)
    logits = torch.cat(outputs) if outputs else torch.empty(0, len(loaded.classes))
    return good_all, logits, bad_all


def predict_proba_files(
    loaded: LoadedModel, paths: Sequence[str | Path], *, batch_size: int = 32
) -> tuple[list[str], torch.Tensor, list[tuple[str, str]]]:
    """Class probabilities for each readable file.

    Returns:
        The readable paths, their probabilities (N, num_classes), and (path, reason) for the others.
    """
    good, logits, bad = logits_for_files(loaded, paths, batch_size=batch_size)
    return good, torch.softmax(logits, dim=1), bad


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
