"""Class imbalance: balanced loss weights and class-balanced sample weights from the labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from headstart.errors import ConfigError

__all__ = ["balanced_class_weights", "balanced_sample_weights", "dataset_targets"]


def dataset_targets(dataset: Dataset) -> torch.Tensor:
    """The label of every sample of ``dataset``, in order, without reading its images.

    Datasets of headstart have ``targets``; a ``TensorDataset`` holds its labels second.

    Raises:
        ConfigError: The dataset does not say its labels.
    """
    targets: Any = getattr(dataset, "targets", None)
    if targets is None and isinstance(dataset, TensorDataset) and len(dataset.tensors) > 1:
        targets = dataset.tensors[1]
    if targets is None:
        raise ConfigError(
            f"{type(dataset).__name__} does not give its labels (a `targets` attribute); "
            "class weights and the balanced sampler need them: use --sampler shuffle and "
            "--class-weights none with it."
        )
    return _as_labels(targets)


def _as_labels(values: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().long().reshape(-1)
    return torch.as_tensor(np.asarray(values), dtype=torch.long).reshape(-1)


def _counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"labels run from {int(labels.min())} to {int(labels.max())}, but there are "
            f"{num_classes} classes; the head must have one output per class folder."
        )
    return torch.bincount(labels, minlength=num_classes).double()


def balanced_class_weights(
    labels: torch.Tensor | np.ndarray | Sequence[int], num_classes: int
) -> torch.Tensor:
    """Loss weight ``n / (k * count_c)`` per class (scikit-learn's "balanced").

    A class without training images gets weight 0 (no target of it ever appears).

    Returns:
        ``[num_classes]`` float32 weights.
    """
    labels = _as_labels(labels)
    counts = _counts(labels, num_classes)
    weights = torch.where(
        counts > 0, labels.numel() / (num_classes * counts.clamp_min(1)), torch.zeros(())
    )
    return weights.float()


def balanced_sample_weights(labels: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
    """Per sample ``1 / count of its class``: each class is drawn equally often on average.

    Returns:
        ``[n]`` float64 weights, for ``torch.multinomial`` or ``WeightedRandomSampler``.
    """
    labels = _as_labels(labels)
    if not labels.numel():
        return torch.zeros(0, dtype=torch.float64)
    counts = torch.bincount(labels).double()
    return 1.0 / counts[labels]
