"""Evaluate a loaded model on labelled samples: accuracy, macro-F1, per-class accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from headstart.artifact import LoadedModel
from headstart.data.folders import Sample
from headstart.defaults import INFERENCE_BATCH_SIZE
from headstart.errors import DataError
from headstart.evaluation.metrics import summarize
from headstart.evaluation.result import EvalResult
from headstart.inference.predict import logits_for_files

if TYPE_CHECKING:
    from headstart.data.image_store import DecodedImageCache

__all__ = ["evaluate_samples"]


def evaluate_samples(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    batch_size: int = INFERENCE_BATCH_SIZE,
    tta: str = "none",
    images: DecodedImageCache | None = None,
) -> EvalResult:
    """Run the model over ``samples`` on its device and summarise the predictions.

    Files that cannot be read are left out (never replaced by another image) and listed under
    ``metrics["skipped"]``; ``metrics["num_images"]`` counts the images actually scored.
    Decoding overlaps inference in a thread.

    Args:
        tta: Test-time augmentation (``none``, ``flip``, ``crops``; see
            :mod:`headstart.inference.predict`): the metrics, loss included, score the averaged
            probabilities, and the result's logits are their logarithm.
        images: A decoded-image store entry holding the files (see ``logits_for_files``).

    Raises:
        DataError: There are no samples, or none of them could be read.
    """
    if not samples:
        raise DataError("no labelled images to evaluate; check the data folder's class folders.")
    labels = {s.path: s.label for s in samples}
    paths = [s.path for s in samples]
    good, logits, bad = logits_for_files(
        loaded, paths, batch_size=batch_size, tta=tta, task="evaluating", images=images
    )
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
