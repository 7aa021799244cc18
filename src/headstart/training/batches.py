"""The two kinds of batches a phase trains on: decoded images, or cached features of a frozen body.

Both give the engine the same things: the module that maps a batch to logits (the whole model, or
its head behind the body's dropout), seeded shuffled training batches with a generator whose state
a checkpoint keeps, validation batches in order, the training labels, and a random batch for the
speed trial. A phase is a phase whichever it trains on.

``sampler`` ``balanced`` draws each epoch's training batches with replacement, each sample with
weight ``1 / count of its class`` (``WeightedRandomSampler`` for images, ``torch.multinomial`` for
features), from the same seeded generator, so the draws are seeded and a resume replays them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import torch
from lightning_fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler

from headstart.config import Sampler
from headstart.errors import ConfigError
from headstart.training.features import FeatureSet, head_dropout
from headstart.training.imbalance import balanced_sample_weights, dataset_targets
from headstart.training.loop import Batches
from headstart.training.sharding import ShardSampler, shard, shard_size
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
    sample_weights: torch.Tensor | None = None,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """Training (shuffled by a seeded generator) and validation (in order) data loaders.

    The shuffling order depends only on ``seed``. With ``sample_weights``, each epoch draws
    ``len(train_ds)`` samples with replacement by those weights instead (from the same
    generator). Workers persist across epochs when ``num_workers > 0``; see
    :func:`drops_last_batch` for the last training batch. Process ``rank`` of ``world`` (DDP)
    gets its shard of each epoch's order and of the validation set
    (:mod:`headstart.training.sharding`).
    """
    generator = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,  # for a GPU: copies then overlap compute
    }
    n = len(train_ds)  # type: ignore[arg-type]
    order: dict[str, Any] = {"shuffle": True}
    if world > 1:
        weights = sample_weights
        order = {"sampler": ShardSampler(n, generator, rank=rank, world=world, weights=weights)}
        n_val = len(val_ds)  # type: ignore[arg-type]
        val_ds = Subset(val_ds, shard(torch.arange(n_val), rank, world).tolist())
    elif sample_weights is not None:
        weights = cast(Sequence[float], sample_weights)  # a tensor is what it takes in the end
        sampler = WeightedRandomSampler(weights, n, replacement=True, generator=generator)
        order = {"sampler": sampler}
    drop = drops_last_batch(shard_size(n, world), batch_size)
    train = DataLoader(train_ds, generator=generator, drop_last=drop, **order, **common)
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
        val_size: Samples in the whole validation set (with several processes, each validates
            a shard of it and the outputs are gathered).
    """

    train: Batches
    val: Batches
    generator: torch.Generator
    setup_seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    val_size: int = 0

    holds_images: ClassVar[bool] = True
    """Whether the inputs are images (CutMix applies) rather than feature vectors."""

    def train_labels(self) -> torch.Tensor:
        """The label of every training sample (for class weights)."""
        raise NotImplementedError

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
        sampler: Sampler = Sampler.SHUFFLE,
    ) -> ImageBatches:
        """Loaders for the two datasets, moved to Fabric's device batch by batch.

        Args:
            sampler: ``shuffle`` (every image once per epoch) or ``balanced`` (class-balanced
                draws with replacement; the dataset must give its ``targets``).
        """
        weights = None
        if Sampler(sampler) is Sampler.BALANCED:
            weights = balanced_sample_weights(dataset_targets(train_ds))
        train, val = build_loaders(
            train_ds, val_ds, batch_size=batch_size, num_workers=num_workers, seed=seed,
            sample_weights=weights, rank=fabric.global_rank, world=fabric.world_size,
            pin_memory=fabric.device.type == "cuda",
        )  # fmt: skip
        device_train, device_val = fabric.setup_dataloaders(
            train, val, use_distributed_sampler=False  # build_loaders shards
        )
        generator = cast(torch.Generator, train.generator)  # build_loaders gives it one
        return cls(device_train, device_val, generator, datasets=(train_ds, val_ds),
                   batch_size=batch_size, val_size=len(val_ds))  # type: ignore[arg-type]

    def train_labels(self) -> torch.Tensor:
        return dataset_targets(self.datasets[0])

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
    """Batches of a :class:`FeatureSet` as device tensors, like a ``DataLoader`` over them.

    Without a generator the rows come in order; with one, a seeded shuffle per epoch, or with
    ``balanced`` a class-balanced draw with replacement (``torch.multinomial``). Process ``rank``
    of ``world`` gets its shard of that order (:func:`~headstart.training.sharding.shard`).
    """

    def __init__(
        self,
        features: FeatureSet,
        batch_size: int,
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
        balanced: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.set, self.batch_size, self.device = features, batch_size, device
        self.generator = generator  # None: in order, every row
        self.rank, self.world = rank, world
        n = len(features.labels)
        self.rows = shard_size(n, world)
        self.drop_last = generator is not None and drops_last_batch(self.rows, batch_size)
        self.labels = torch.from_numpy(features.labels)
        self.weights = balanced_sample_weights(self.labels) if balanced and n else None

    def __len__(self) -> int:
        n = self.rows
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.set.labels)
        if self.generator is None:
            order = torch.arange(n)
        elif self.weights is not None:
            order = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        else:
            order = torch.randperm(n, generator=self.generator)
        if self.world > 1:
            order = shard(order, self.rank, self.world)
        for index in order.split(self.batch_size)[: len(self)]:
            rows = np.asarray(self.set.features[index.numpy()], dtype=np.float32)
            yield torch.from_numpy(rows).to(self.device), self.labels[index].to(self.device)


@dataclass
class FeatureBatches(PhaseBatches):
    """Cached body outputs; only the head trains (on un-augmented features)."""

    dropout: float = 0.0
    sets: tuple[FeatureSet, ...] = ()

    holds_images: ClassVar[bool] = False

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
        sampler: Sampler = Sampler.SHUFFLE,
    ) -> FeatureBatches:
        """Batches of ``train`` (shuffled, or class-balanced draws) and ``val`` for the head."""
        generator = torch.Generator().manual_seed(seed)
        ranks = {"device": fabric.device, "rank": fabric.global_rank, "world": fabric.world_size}
        balanced = Sampler(sampler) is Sampler.BALANCED
        return cls(
            FeatureLoader(train, batch_size, generator=generator, balanced=balanced, **ranks),
            FeatureLoader(val, VAL_FEATURE_BATCH, **ranks),
            generator,
            train.seconds + val.seconds,
            {**train.failures, **val.failures},
            len(val.labels),
            head_dropout(model, spec),
            (train, val),
        )

    def train_labels(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.sets[0].labels)).long()

    def module(self, model: nn.Module, spec: BackboneSpec) -> nn.Module:
        head = model.get_submodule(spec.classifier)
        if not isinstance(head, nn.Linear):
            raise ConfigError(
                f"{spec.name}: the classifier {spec.classifier!r} is a {type(head).__name__}, "
                "not an nn.Linear; train without the feature cache (--no-cache)."
            )
        return FeatureHead(head, self.dropout)
