"""The batches of each phase of a run, made when the phase starts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.config import AUTO, TrainConfig
from headstart.errors import DataError
from headstart.pipeline.notes import Notes
from headstart.pipeline.ranks import from_rank_zero, rank_zero_first
from headstart.pipeline.recipe import process_batch_size

if TYPE_CHECKING:
    from lightning_fabric import Fabric
    from torch import nn
    from torch.utils.data import Dataset

    from headstart.data.folders import DataSplits
    from headstart.data.image_store import DecodedImageCache
    from headstart.preprocessing import PreprocessSpec
    from headstart.training.batches import PhaseBatches
    from headstart.training.strategies import Phase
    from headstart.zoo.spec import BackboneSpec

__all__ = ["PhaseData"]


class PhaseData:
    """The batches of each phase, made when the phase starts.

    With the cache on, a phase that trains the head only trains on cached features (the frozen
    body runs once per image); other phases train on decoded, augmented images, read from the
    decoded-image cache when it is on. ``decoded`` is the store entry the audit filled (None: it
    is opened or built here when first needed). Whatever does not fit the cache budget is
    decoded as it is read, with a note.
    """

    def __init__(
        self,
        fabric: Fabric,
        config: TrainConfig,
        splits: DataSplits,
        model: nn.Module,
        spec: BackboneSpec,
        pre: PreprocessSpec,
        notes: Notes,
        decoded: str | None = None,
    ) -> None:
        from headstart.files import cache_budget

        self.fabric, self.config, self.splits = fabric, config, splits
        self.model, self.spec, self.pre, self.notes = model, spec, pre, notes
        self.budget = cache_budget(config.cache_budget)
        self._decoded_folder = decoded
        self._decoded: DecodedImageCache | None = None
        self._decoded_looked = False
        self._images: PhaseBatches | None = None
        self._noted: set[str] = set()

    @property
    def batch_size(self) -> int:
        """Training images per batch in this process (``--batch-size`` is all processes')."""
        return process_batch_size(self.config.batch_size, self.fabric.world_size)

    @property
    def workers(self) -> int:
        """DataLoader workers: ``--num-workers``, or for ``auto`` none on a CPU (the main process
        keeps up with the decoded-image cache, and a resume is bit-exact) and up to 8 for a GPU
        process (the main process alone starves a GPU), sharing the machine's CPUs."""
        return loader_workers(self.config.num_workers, self.fabric)

    def on_features(self, phase: Phase) -> bool:
        """Whether ``phase`` trains on cached features (they must fit the cache budget)."""
        return self.config.cache and phase.trainable_stages == 0 and self._features_fit()

    def _features_fit(self) -> bool:
        """Whether the features (float32) fit the budget beside the run's decoded images."""
        count = len(self.splits.train) + len(self.splits.val)
        store = self.decoded_images(build=False)
        beside = 0 if store is None else store.nbytes
        return count * self.spec.num_features * 4 + beside <= self.budget

    def decoded_images(self, *, build: bool = True) -> DecodedImageCache | None:
        """The decoded-image store entry of the run's files (opened or built once); None without
        the cache, or when the squares would not fit the cache budget. ``build=False``: only
        the entry the audit filled, if any."""
        from headstart.data.image_cache import build_decoded_cache
        from headstart.data.image_store import DecodedImageCache

        if not self.config.cache or self._decoded_looked:
            return self._decoded
        if self._decoded_folder is not None and self._decoded is None:
            try:  # another node of a multi-node run has its own cache folder
                self._decoded = DecodedImageCache(Path(self._decoded_folder))
            except DataError:
                self._decoded_folder = None
        if not build:
            return self._decoded
        self._decoded_looked = True
        if self._decoded is None or not self._decoded.holds(pre=self.pre):  # none from the audit
            samples = [*self.splits.train, *self.splits.val, *self.splits.test]
            self._decoded = rank_zero_first(self.fabric, lambda: build_decoded_cache(
                samples, self.pre, budget_bytes=self.budget))  # fmt: skip
        if self._decoded is None:
            self._note_once(
                f"the decoded images do not fit the cache budget ({self._told}); they are decoded "
                "as they are read (slower epochs): raise --cache-budget (or "
                "HEADSTART_CACHE_BUDGET) to cache them"
            )
        return self._decoded

    @property
    def _told(self) -> str:
        setting = self.config.cache_budget
        return setting if setting is not None else f"{self.budget / 1e9:.1f} GB"

    def _note_once(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.notes.add(text)

    def __call__(self, phase: Phase) -> PhaseBatches:
        if self.config.cache and phase.trainable_stages == 0 and not self._features_fit():
            self._note_once(
                f"the frozen body's features do not fit the cache budget ({self._told}) beside "
                f"the decoded images; the {phase.name} phase trains on augmented images instead "
                "(slower): raise --cache-budget (or HEADSTART_CACHE_BUDGET) to cache them"
            )
        if self.on_features(phase):
            return self._features(phase)
        if self._images is None:
            self._images = self._image_batches()
        return self._images

    def _image_batches(self) -> PhaseBatches:
        from headstart.data.datasets import ImageDataset
        from headstart.data.transforms import build_eval_transform, build_train_transform
        from headstart.training.batches import ImageBatches

        config, splits, pre = self.config, self.splits, self.pre
        augment = {"hflip": config.hflip is not False, "random_erasing": config.random_erasing}
        decoded = self.decoded_images()  # each image decoded once; epochs read uint8 from disk
        if decoded is not None:
            from headstart.data.image_cache import CachedImageDataset

            train: Dataset = CachedImageDataset(
                splits.train, pre, config.augment.value, decoded, **augment
            )
            val: Dataset = CachedImageDataset(splits.val, pre, None, decoded)
        else:
            transform = build_train_transform(pre, config.augment.value, **augment)
            train = ImageDataset(splits.train, transform)
            val = ImageDataset(splits.val, build_eval_transform(pre))
        return ImageBatches.create(
            self.fabric, train, val, batch_size=self.batch_size,
            num_workers=self.workers, seed=config.seed, sampler=config.sampler,
        )  # fmt: skip

    def _features(self, phase: Phase) -> PhaseBatches:
        from headstart.speed.settings import describe
        from headstart.training.batches import FeatureBatches
        from headstart.training.features import extract_features, extraction_settings

        config, splits, model = self.config, self.splits, self.model
        model.to(self.fabric.device)
        fabric = self.fabric  # several processes: rank 0 times and extracts, the others read
        settings = from_rank_zero(
            fabric, lambda: extraction_settings(model, self.spec, self.pre.input_size)
        )
        common: dict[str, Any] = {
            "batch_size": max(config.batch_size, 64), "settings": settings,
            "num_workers": self.workers, "budget_bytes": self.budget,
            "images": self.decoded_images(build=False),
        }  # fmt: skip
        train = rank_zero_first(
            fabric, lambda: extract_features(model, self.spec, splits.train, self.pre, **common)
        )
        val = rank_zero_first(
            fabric, lambda: extract_features(model, self.spec, splits.val, self.pre, **common)
        )
        reused = train.from_cache and val.from_cache
        self.notes.add(
            f"feature cache: {'reused' if reused else 'computed'} features of "
            f"{len(splits.train) + len(splits.val)} images ({train.folder.parent}; body run in "
            f"{describe(settings)}, the fastest in a timed trial on this machine); the "
            f"{phase.name} phase trains on un-augmented features (--no-cache trains with "
            "augmentation)"
        )
        return FeatureBatches.create(
            self.fabric, model, self.spec, train, val, batch_size=self.batch_size,
            seed=config.seed, sampler=config.sampler,
        )  # fmt: skip


def loader_workers(setting: int | str, fabric: Fabric) -> int:
    """The DataLoader workers ``setting`` means for this process (see ``PhaseData.workers``)."""
    import os

    if setting != AUTO:
        return int(setting)
    if fabric.device.type != "cuda":
        return 0
    local = max(1, fabric.world_size // max(1, fabric.num_nodes))
    return max(1, min(8, (os.cpu_count() or 1) // local - 1))
