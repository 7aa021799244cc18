"""The two kinds of batches a phase trains on: decoded images, or cached features of a frozen body.

Both give the engine the same things: the module that maps a batch to logits (the whole model, or
its head behind the body's dropout), seeded shuffled training batches with a generator whose state
a checkpoint keeps, validation batches in order, and a random batch for the speed trial. A phase
is a phase whichever it trains on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader, Dataset

from headstart.errors import ConfigError
from headstart.training.features import FeatureSet, head_dropout
from headstart.training.loop import Batches
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "FeatureBatches",
    "FeatureHead",
    "FeatureLoader",
    "ImageBatches",
    "PhaseBatches",
    "build_loaders",
    "drops_last_batch",
]

VAL_FEATURE_BATCH = 4096
"""Validation rows per forward pass of the head (a linear layer: large batches are cheap)."""


def drops_last_batch(n: int, batch_size: int) -> bool:
    """Whether the last training batch is dropped: it would hold one sample, and BatchNorm (and
    the statistics of a batch) cannot train on one."""
    return n > batch_size and n % batch_size == 1


def build_loaders(
    train_ds: Dataset,
    val_ds: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader]:
    """Training (shuffled by a seeded generator) and validation (in order) data loaders.

    The shuffling order depends only on ``seed``. Workers persist across epochs when
    ``num_workers > 0``; see :func:`drops_last_batch` for the last training batch.
    """
    generator = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
    }
    drop = drops_last_batch(len(train_ds), batch_size)  # type: ignore[arg-type]
    train = DataLoader(train_ds, shuffle=True, generator=generator, drop_last=drop, **common)
    val = DataLoader(val_ds, shuffle=False, **common)
    return train, val


@dataclass
class PhaseBatches:
    """What a phase trains and validates on (see the two kinds below).

    Attributes:
        train: Training batches on the device, reshuffled by ``generator`` every epoch.
        val: Validation batches on the device, in order.
        generator: Draws the training order; the engine seeds it at each phase start and keeps its
            state in checkpoints.
        setup_seconds: Time spent preparing them (extracting features), counted in the first
            epoch of the phase.
        failures: Path -> reason for images found unreadable while preparing them.
    """

    train: Batches
    val: Batches
    generator: torch.Generator
    setup_seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    def broken_files(self) -> dict[str, str]:
        """Path -> reason for every image found unreadable so far (substituted by another)."""
        return dict(self.failures)

    def module(self, model: nn.Module, spec: BackboneSpec) -> nn.Module:
        """The module that maps a batch to logits."""
        return model

    def trial_batch(self) -> torch.Tensor | None:
        """A random batch shaped like the training inputs for the speed trial (None: no trial)."""
        return None


@dataclass
class ImageBatches(PhaseBatches):
    """Decoded, augmented images through ``DataLoader``s set up by Fabric."""

    datasets: tuple[Any, ...] = ()
    batch_size: int = 1

    @classmethod
    def create(
        cls,
        fabric: Fabric,
        train_ds: Dataset,
        val_ds: Dataset,
        *,
        batch_size: int,
        num_workers: int,
        seed: int,
    ) -> ImageBatches:
        """Loaders for the two datasets, moved to Fabric's device batch by batch."""
        train, val = build_loaders(
            train_ds, val_ds, batch_size=batch_size, num_workers=num_workers, seed=seed
        )
        device_train, device_val = fabric.setup_dataloaders(train, val)
        generator = cast(torch.Generator, train.generator)  # build_loaders gives it one
        return cls(device_train, device_val, generator, datasets=(train_ds, val_ds),
                   batch_size=batch_size)  # fmt: skip

    def broken_files(self) -> dict[str, str]:
        """The files the datasets could not decode (with ``num_workers > 0``, those the main
        process saw; the log names every one)."""
        found = dict(self.failures)
        for dataset in self.datasets:
            found.update(getattr(dataset, "failures", {}))
        return found

    def trial_batch(self) -> torch.Tensor | None:
        """Random images of the training shape (the dataset's RNG draws are undone)."""
        train = self.datasets[0]
        with torch.random.fork_rng(devices=[]):
            image = train[0][0]
        n = min(self.batch_size, len(train))
        return torch.randn(n, *image.shape, generator=torch.Generator().manual_seed(0))


class FeatureHead(nn.Module):
    """The model's classifier fed with cached features: the body's dropout, then the head.

    In training mode the features get the dropout the model applies just before its classifier,
    so the head trains as it would inside the model; its parameters are the model's own.
    """

    def __init__(self, head: nn.Linear, dropout: float) -> None:
        super().__init__()
        self.head = head
        self.dropout = float(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.dropout:
            features = nn.functional.dropout(features, self.dropout, training=self.training)
        return self.head(features)


class FeatureLoader:
    """Batches of a :class:`FeatureSet` as device tensors, like a ``DataLoader`` over them."""

    def __init__(
        self,
        features: FeatureSet,
        batch_size: int,
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> None:
        self.set, self.batch_size, self.device = features, batch_size, device
        self.generator = generator  # None: in order, every row
        n = len(features.labels)
        self.drop_last = generator is not None and drops_last_batch(n, batch_size)
        self.labels = torch.from_numpy(features.labels)

    def __len__(self) -> int:
        n = len(self.set.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.set.labels)
        order = (
            torch.randperm(n, generator=self.generator)
            if self.generator is not None
            else torch.arange(n)
        )
        for index in order.split(self.batch_size)[: len(self)]:
            rows = np.asarray(self.set.features[index.numpy()], dtype=np.float32)
            yield torch.from_numpy(rows).to(self.device), self.labels[index].to(self.device)


@dataclass
class FeatureBatches(PhaseBatches):
    """Cached body outputs; only the head trains (on un-augmented features)."""

    dropout: float = 0.0
    sets: tuple[FeatureSet, ...] = ()

    @classmethod
    def create(
        cls,
        fabric: Fabric,
        model: nn.Module,
        spec: BackboneSpec,
        train: FeatureSet,
        val: FeatureSet,
        *,
        batch_size: int,
        seed: int,
    ) -> FeatureBatches:
        """Batches of ``train`` (shuffled) and ``val`` for the head of ``model``."""
        generator = torch.Generator().manual_seed(seed)
        device = fabric.device
        return cls(
            FeatureLoader(train, batch_size, device=device, generator=generator),
            FeatureLoader(val, VAL_FEATURE_BATCH, device=device),
            generator,
            train.seconds + val.seconds,
            {**train.failures, **val.failures},
            head_dropout(model, spec),
            (train, val),
        )

    def module(self, model: nn.Module, spec: BackboneSpec) -> nn.Module:
        head = model.get_submodule(spec.classifier)
        if not isinstance(head, nn.Linear):
            raise ConfigError(
                f"{spec.name}: the classifier {spec.classifier!r} is a {type(head).__name__}, "
                "not an nn.Linear; train without the feature cache (--no-cache)."
            )
        return FeatureHead(head, self.dropout)
