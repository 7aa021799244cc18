"""A whole training run: data -> audit -> model -> engine -> model folder -> test metrics -> report.

The CLI's ``train`` and ``demo`` commands and ``ImageClassifier.fit`` all call :func:`train_run`;
``headstart train --resume`` calls :func:`resume_run`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.config import BnStats, TrainConfig
from headstart.errors import CheckpointError
from headstart.run_folder import RunFolder
from headstart.training.callbacks import Callback, CallbackList

if TYPE_CHECKING:
    from lightning.fabric import Fabric
    from torch import nn
    from torch.utils.data import Dataset

    from headstart.artifact import LoadedModel
    from headstart.data.audit import AuditReport
    from headstart.data.folders import DataSplits, Sample
    from headstart.evaluation.result import EvalResult
    from headstart.preprocessing import PreprocessSpec
    from headstart.training.batches import PhaseBatches
    from headstart.training.engine import EngineSettings, TrainResult
    from headstart.training.strategies import Phase
    from headstart.zoo.spec import BackboneSpec

__all__ = ["NOTE_FLAG", "RunResult", "resume_run", "train_run"]

log = logging.getLogger(__name__)

NOTE_FLAG = "headstart_note"
"""Set on the log records of notes, which callbacks already show (a console handler skips them)."""


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    model_dir: Path
    classes: tuple[str, ...]
    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    model: nn.Module
    preprocessing: PreprocessSpec
    spec: BackboneSpec
    notes: list[str] = field(default_factory=list)


class _Notes(Callback):
    """Notices worth showing the user: kept, logged, and passed on to the callbacks' ``on_note``."""

    def __init__(self, callbacks: Callback) -> None:
        self.messages: list[str] = []
        self._callbacks = callbacks

    def on_note(self, message: str) -> None:
        self.add(message)

    def add(self, message: str, *, level: int = logging.INFO) -> None:
        self.messages.append(message)
        log.log(level, message, extra={NOTE_FLAG: True})  # shown once: the CLI prints notes
        self._callbacks.on_note(message)


def train_run(
    config: TrainConfig,
    origin: dict[str, str] | None = None,
    *,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Train a classifier as ``config`` says and write its run folder.

    Args:
        config: Effective settings.
        origin: Where each setting came from (for ``config.yaml``); all "default" if omitted.
        callbacks: Told about phases, steps, epochs and notes (renamed folder, made splits, ...).
    """
    from headstart.data.folders import load_splits

    origin = origin or dict.fromkeys(config.to_dict(), "default")
    notes = _Notes(CallbackList(callbacks))
    fabric = _fabric(config)  # an accelerator this machine lacks fails before any work
    splits = load_splits(
        config.data, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
        seed=config.seed,
    )  # fmt: skip
    _refuse_out_in_data(config.out, splits)
    report = _audit(splits, config, notes)
    splits = report.clean_splits()
    model, spec = _create_model(config, num_classes=len(splits.classes))
    run, renamed = RunFolder.create(config.out, explicit=origin.get("out") != "default")
    if renamed:
        notes.add(renamed)
    if splits.origin.get("layout") in ("split", "cifar10") or splits.origin.get(
        "carved_from_train"
    ):
        notes.add(
            f"validation split made from the training images (seed {config.seed}): "
            f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test; "
            f"saved in {RunFolder.SPLITS}"
        )
    run.save_splits(splits)
    run.save_data_report(report.to_dict())
    run.save_config(config, origin)
    return _train_and_save(
        fabric, config, splits, model, spec, run, notes, callbacks, resume=False
    )


def resume_run(
    run_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint, with its saved settings and splits.

    Args:
        run_dir: A run folder written by :func:`train_run`.
        overrides: Settings that may change on resume (``config.RESUME_FREE`` and
            ``config.RESUME_INEXACT``); others make the checkpoint refuse to load.
        callbacks: As for :func:`train_run`.

    Raises:
        ConfigError: If ``run_dir`` is not a run folder.
        CheckpointError: If no usable checkpoint is there or it does not match the settings.
    """
    run = RunFolder.open(run_dir)
    config, _ = run.load_config(**(overrides or {}))
    fabric = _fabric(config)
    if not run.has_checkpoint():
        raise CheckpointError(
            f"{run_dir} has no checkpoint to resume from (it stopped before its first epoch "
            "ended); start the run again."
        )
    splits = run.read_splits()  # already without the skipped files
    model, spec = _create_model(config, num_classes=len(splits.classes))
    notes = _Notes(CallbackList(callbacks))
    notes.add(f"resuming the run in {run_dir} from its last checkpoint")
    return _train_and_save(fabric, config, splits, model, spec, run, notes, callbacks, resume=True)


def data_fingerprint(classes: tuple[str, ...], samples: Sequence[Sample]) -> str:
    """A short hash of class names and (file name, size, label) of every sample."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    for s in sorted(samples, key=lambda s: s.path):
        try:
            size = os.stat(s.path).st_size
        except OSError:
            size = -1
        digest.update(f"{Path(s.path).name}\0{size}\0{s.label}\n".encode())
    return digest.hexdigest()[:16]


def _refuse_out_in_data(out: str, splits: DataSplits) -> None:
    """The run folder must not lie among the images (it may sit beside ``train/`` and ``val/``)."""
    from headstart.files import refuse_inside

    for root in splits.image_roots():
        refuse_inside(out, root)


def _audit(splits: DataSplits, config: TrainConfig, notes: _Notes) -> AuditReport:
    """Decode every image once (read-only); refuse unusable data, note skipped files."""
    from headstart.data.audit import audit_splits

    report = audit_splits(splits)
    report.raise_if_unusable(config.max_bad_fraction)
    if report.num_bad_samples:
        notes.add(
            f"skipping {report.num_bad_samples} of {report.num_samples} images that cannot be "
            f"used; they are listed in {RunFolder.DATA_REPORT}"
        )
    for warning in report.warnings[:5]:
        notes.add(warning)
    if len(report.warnings) > 5:
        notes.add(f"{len(report.warnings) - 5} more data warning(s) in {RunFolder.DATA_REPORT}")
    return report


def _plan(config: TrainConfig, spec: BackboneSpec) -> list[Phase]:
    from headstart.training.strategies import plan_phases

    return plan_phases(
        config.strategy, spec, epochs=config.epochs, head_epochs=config.head_epochs,
        unfreeze_stages=config.unfreeze_stages, lr=config.lr,
    )  # fmt: skip


def _create_model(config: TrainConfig, *, num_classes: int) -> tuple[nn.Module, BackboneSpec]:
    """Build the pretrained model with a new seeded head; check the strategy fits the model."""
    import torch

    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    model, spec = create_backbone(config.model, pretrained=True, weights_file=config.weights)
    _plan(config, spec)  # fails early on --unfreeze-stages beyond the model's stages
    torch.manual_seed(config.seed)
    return replace_head(model, spec, num_classes), spec


def _engine_settings(config: TrainConfig) -> EngineSettings:
    from headstart.training.engine import EngineSettings
    from headstart.training.phase import OptimSettings

    optim = OptimSettings(
        optimizer=config.optimizer, momentum=config.momentum, weight_decay=config.weight_decay,
        backbone_lr_factor=config.backbone_lr_factor, layer_decay=config.layer_decay,
        warmup_epochs=config.warmup_epochs, label_smoothing=config.label_smoothing,
    )  # fmt: skip
    return EngineSettings(
        seed=config.seed, optim=optim, monitor=config.monitor, patience=config.patience,
        bn=config.bn_stats, auto_speed=config.precision == "auto", precision=config.precision,
        checkpoint_every_steps=config.checkpoint_every_steps,
    )  # fmt: skip


class _PhaseData:
    """The batches of each phase, made when the phase starts.

    With the cache on, a phase that trains the head only trains on cached features (the frozen
    body runs once per image); other phases train on decoded, augmented images, read from the
    decoded-image cache when it is on.
    """

    def __init__(
        self,
        fabric: Fabric,
        config: TrainConfig,
        splits: DataSplits,
        model: nn.Module,
        spec: BackboneSpec,
        pre: PreprocessSpec,
        notes: _Notes,
    ) -> None:
        self.fabric, self.config, self.splits = fabric, config, splits
        self.model, self.spec, self.pre, self.notes = model, spec, pre, notes
        self._images: PhaseBatches | None = None

    def on_features(self, phase: Phase) -> bool:
        """Whether ``phase`` trains on cached features."""
        return self.config.cache and phase.trainable_stages == 0

    def __call__(self, phase: Phase) -> PhaseBatches:
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
        if config.cache:  # decode and resize each image once; epochs read uint8 from disk
            from headstart.data.image_cache import CachedImageDataset

            train: Dataset = CachedImageDataset(splits.train, pre, config.augment.value)
            val: Dataset = CachedImageDataset(splits.val, pre, None)
        else:
            train = ImageDataset(splits.train, build_train_transform(pre, config.augment.value))
            val = ImageDataset(splits.val, build_eval_transform(pre))
        return ImageBatches.create(
            self.fabric, train, val, batch_size=config.batch_size,
            num_workers=config.num_workers, seed=config.seed,
        )  # fmt: skip

    def _features(self, phase: Phase) -> PhaseBatches:
        from headstart.speed.settings import describe
        from headstart.training.batches import FeatureBatches
        from headstart.training.features import extract_features, extraction_settings

        config, splits, model = self.config, self.splits, self.model
        model.to(self.fabric.device)
        settings = extraction_settings(model, self.spec, self.pre.input_size)
        common: dict[str, Any] = {
            "batch_size": max(config.batch_size, 64), "settings": settings,
            "num_workers": config.num_workers,
        }  # fmt: skip
        train = extract_features(model, self.spec, splits.train, self.pre, **common)
        val = extract_features(model, self.spec, splits.val, self.pre, **common)
        reused = train.from_cache and val.from_cache
        self.notes.add(
            f"feature cache: {'reused' if reused else 'computed'} features of "
            f"{len(splits.train) + len(splits.val)} images ({train.folder.parent}; body run in "
            f"{describe(settings)}, the fastest in a timed trial on this machine); the "
            f"{phase.name} phase trains on un-augmented features (--no-cache trains with "
            "augmentation)"
        )
        return FeatureBatches.create(
            self.fabric, model, self.spec, train, val, batch_size=config.batch_size,
            seed=config.seed,
        )  # fmt: skip


def _fabric(config: TrainConfig) -> Fabric:
    from headstart.training.devices import create_fabric

    return create_fabric(config.accelerator, config.precision)


def _train_and_save(
    fabric: Fabric,
    config: TrainConfig,
    splits: DataSplits,
    model: nn.Module,
    spec: BackboneSpec,
    run: RunFolder,
    notes: _Notes,
    callbacks: Sequence[Callback],
    *,
    resume: bool,
) -> RunResult:
    from headstart.artifact import LoadedModel, save_model_dir
    from headstart.speed.allocator import keep_freed_memory
    from headstart.training.engine import train_phases

    classes = tuple(splits.classes)
    pre = spec.preprocessing.with_size(config.image_size)
    data = _PhaseData(fabric, config, splits, model, spec, pre, notes)
    with ExitStack() as stack:
        stack.enter_context(keep_freed_memory())  # page faults cost 20-35% of a CPU step
        listeners = [notes, *callbacks]
        if config.tensorboard:
            from headstart.training.tensorboard import TensorBoardLogger

            listeners.append(stack.enter_context(TensorBoardLogger(run.tensorboard_dir)))
        result = train_phases(
            fabric, model, spec, _plan(config, spec), data, _engine_settings(config),
            folder=run, run_config=config.to_dict(), callbacks=CallbackList(listeners),
            resume=resume,
        )  # fmt: skip
    image_phases = [p.name for p in result.phases if not data.on_features(p)]
    _note_speed(result, image_phases, config, notes)
    if result.diverged:
        notes.add(result.diverged, level=logging.WARNING)
    if result.failures:
        notes.add(
            f"{len(result.failures)} image(s) broke during training and were replaced; see "
            f"{run.data_report_file}",
            level=logging.WARNING,
        )
        run.add_run_failures(result.failures)
    model = result.model.cpu().eval()
    loaded = LoadedModel(model=model, classes=classes, preprocessing=pre, name=spec.name)
    test_metrics, evaluated = _test_metrics(loaded, splits, config.batch_size)
    best = {k: v for k, v in result.best_metrics.items() if isinstance(v, (int, float, str))}
    model_dir = save_model_dir(
        run.model_dir, model, spec=spec, classes=classes, preprocessing=pre,
        extra=_model_meta(config, splits, result, best, test_metrics),
    )  # fmt: skip
    _write_run_report(run, evaluated, splits)
    return RunResult(
        run_dir=run.path, model_dir=model_dir, classes=classes, history=result.history,
        best_epoch=result.best_epoch, best_metrics=best, test_metrics=test_metrics,
        model=model, preprocessing=pre, spec=spec, notes=notes.messages,
    )  # fmt: skip


def _model_meta(
    config: TrainConfig,
    splits: DataSplits,
    result: TrainResult,
    best: dict[str, Any],
    test_metrics: dict[str, Any] | None,
) -> dict[str, Any]:
    """What ``headstart.json`` records about the training, beyond the architecture."""
    from headstart.config import Strategy

    classes = tuple(splits.classes)
    partial = config.strategy is Strategy.PARTIAL
    return {
        "strategy": config.strategy.value,
        "bn_stats": BnStats(config.bn_stats).value,
        "unfreeze_stages": config.unfreeze_stages if partial else None,
        "best_epoch": result.best_epoch,
        "metrics": {"val": best, "test": test_metrics},
        "data_hash": data_fingerprint(classes, list(splits.train) + list(splits.val)),
        "images": {k: len(getattr(splits, k)) for k in ("train", "val", "test")},
    }


def _note_speed(
    result: TrainResult, image_phases: list[str], config: TrainConfig, notes: _Notes
) -> None:
    """Tell the user how each image phase ran (chosen by a timed trial under --precision auto)."""
    from headstart.speed.settings import SpeedSettings, describe

    speed = {name: s for name, s in result.speed.items() if name in image_phases}
    if not speed:
        return
    how = ", ".join(f"{name} phase {describe(SpeedSettings(**s))}" for name, s in speed.items())
    if config.precision == "auto":
        notes.add(f"speed: {how} (the fastest in a timed trial on this machine; --precision "
                  "32-true turns autocast off)")  # fmt: skip
    else:
        notes.add(f"speed: {how}, precision {config.precision}")


def _test_metrics(
    loaded: LoadedModel, splits: DataSplits, batch_size: int
) -> tuple[dict[str, Any] | None, EvalResult | None]:
    """Evaluate on the test split, else on the validation split.

    Returns:
        The test metrics (None without a test split) and the evaluation the run's report shows.
    """
    from headstart.inference.evaluate import evaluate_samples

    samples = splits.test or splits.val
    if not samples:
        return None, None
    result = evaluate_samples(loaded, samples, batch_size=batch_size)
    if not splits.test:
        return None, result
    keys = ("acc", "macro_f1", "loss", "top5", "num_images")
    return {k: result.metrics[k] for k in keys if k in result.metrics}, result


def _write_run_report(run: RunFolder, result: EvalResult | None, splits: DataSplits) -> None:
    """Write the evaluation report (HTML, Markdown, CSV, pictures) into the run's report folder."""
    if result is None:
        return
    from headstart.evaluation.report import write_report

    split = "test" if splits.test else "validation (also used to pick the best epoch)"
    write_report(
        run.report_dir, result, splits.classes, history=run.read_history(),
        config=run.read_config_doc(), data_summary=splits, skipped=run.skipped_files(),
        title=f"{run.path.name}: {split} split",
    )  # fmt: skip
