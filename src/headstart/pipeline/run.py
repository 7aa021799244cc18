"""Train a run, or resume one: the steps in order, each delegated to the layer that owns it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.config import AUTO, TrainConfig
from headstart.errors import CheckpointError, ConfigError
from headstart.files import cache_budget
from headstart.pipeline.auto_lr import resolve_auto_lr
from headstart.pipeline.finish import (
    model_meta,
    note_budget,
    note_speed,
    test_metrics,
    write_run_report,
)
from headstart.pipeline.notes import Notes
from headstart.pipeline.phase_data import PhaseData
from headstart.pipeline.ranks import from_rank_zero
from headstart.pipeline.recipe import (
    describe_processes,
    describe_recipe,
    engine_settings,
    plan_phases_for,
)
from headstart.pipeline.trackers import check_trackers, open_trackers
from headstart.run_folder import RunFolder
from headstart.training.callbacks import Callback, CallbackList, RunEnd

if TYPE_CHECKING:
    from lightning_fabric import Fabric
    from torch import nn

    from headstart.data.audit import AuditReport
    from headstart.data.folders import DataSplits
    from headstart.preprocessing import PreprocessSpec
    from headstart.training.engine import TrainResult
    from headstart.zoo.spec import BackboneSpec

__all__ = ["RunResult", "resume_run", "train_run"]


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


def train_run(
    config: TrainConfig,
    origin: dict[str, str] | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    started: float | None = None,
    splits: DataSplits | None = None,
) -> RunResult:
    """Train a classifier as ``config`` says and write its run folder.

    Args:
        config: Effective settings.
        origin: Where each setting came from (for ``config.yaml``); all "default" if omitted.
        callbacks: Told about phases, steps, epochs and notes (renamed folder, made splits, ...).
        started: ``time.monotonic()`` when the command began, which ``config.budget`` counts
            from (default: now; the CLI passes its process's start).
        splits: The samples to train on, when the caller has them already (``ImageClassifier.fit``
            given image paths and labels); ``config.data`` is then not read.
    """
    from headstart.data.folders import load_splits

    started = time.monotonic() if started is None else started
    origin = origin or dict.fromkeys(config.to_dict(), "default")
    if config.budget is not None and (config.devices != 1 or config.num_nodes != 1):
        raise ConfigError(
            "--budget plans the run of one process; drop it, or train with --devices 1 "
            "--num-nodes 1."
        )
    fabric = fabric_for(config)  # an accelerator this machine lacks fails before any work
    notes = Notes(CallbackList(callbacks if fabric.is_global_zero else ()))
    cache_budget(config.cache_budget)  # so does a --cache-budget that is not a size
    check_trackers(config)
    if splits is None:
        splits = load_splits(
            config.data, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
            seed=config.seed,
        )  # fmt: skip
    _refuse_out_in_data(config.out, splits)
    model, spec = create_model(config, num_classes=len(splits.classes))
    scanned = splits  # a name the lambda sees as it is here (splits changes below)
    pre = spec.preprocessing.with_size(config.image_size)
    report = from_rank_zero(fabric, lambda: _audit(scanned, config, notes, pre))  # read once
    splits = report.clean_splits()
    deadline = 0.0
    if config.budget is not None:
        from headstart.pipeline.planning import apply_budget

        config, origin, plan = apply_budget(
            config, origin, fabric=fabric, model=model, spec=spec, splits=splits, notes=notes,
            started=started,
        )  # fmt: skip
        deadline = started + plan.budget - plan.seconds["test + report"]
    run = from_rank_zero(fabric, lambda: _new_run_folder(config, origin, splits, report, notes))
    with ExitStack() as trackers:  # open until the report is written
        return _train_and_save(
            fabric, config, splits, model, spec, run, notes, callbacks, resume=False,
            started=started, deadline=deadline, trackers=trackers, decoded=report.decoded,
        )  # fmt: skip


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
    fabric = fabric_for(config)
    callbacks = callbacks if fabric.is_global_zero else ()
    check_trackers(config)
    if not run.has_checkpoint():
        raise CheckpointError(
            f"{run_dir} has no checkpoint to resume from (it stopped before its first epoch "
            "ended); start the run again."
        )
    splits = run.read_splits()  # already without the skipped files
    model, spec = create_model(config, num_classes=len(splits.classes))
    notes = Notes(CallbackList(callbacks))
    notes.add(f"resuming the run in {run_dir} from its last checkpoint")
    pre = spec.preprocessing.with_size(config.image_size)
    decoded = _audited_store(run, splits, pre) if config.cache else None
    with ExitStack() as trackers:  # open until the report is written
        return _train_and_save(
            fabric, config, splits, model, spec, run, notes, callbacks, resume=True,
            started=time.monotonic(), trackers=trackers, decoded=decoded,
        )  # fmt: skip


def _audited_store(run: RunFolder, splits: DataSplits, pre: PreprocessSpec) -> str | None:
    """The decoded-image store entry the run's audit filled, if it is still in the cache: it
    holds the splits' files and the images the audit skipped (the entry's key is over all)."""
    from headstart.data.audit.report import SAMPLE_KINDS
    from headstart.data.image_store import SquareSpec, open_store
    from headstart.files import cache_dir

    skipped = {path for path, _ in run.skipped_files(SAMPLE_KINDS)}
    paths = sorted({s.path for s in (*splits.train, *splits.val, *splits.test)} | skipped)
    found = open_store(cache_dir() / "images", paths, SquareSpec.of(pre))
    return None if found is None else str(found.folder)


def _new_run_folder(
    config: TrainConfig,
    origin: dict[str, str],
    splits: DataSplits,
    report: AuditReport,
    notes: Notes,
) -> RunFolder:
    """Create the run folder and write its splits, data report and settings."""
    run, renamed = RunFolder.create(config.out, explicit=origin.get("out") != "default")
    if renamed:
        notes.add(renamed)
    if splits.origin.get("layout") in ("split", "cifar10", "samples") or splits.origin.get(
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
    return run


def _refuse_out_in_data(out: str, splits: DataSplits) -> None:
    """The run folder must not lie among the images (it may sit beside ``train/`` and ``val/``)."""
    from headstart.files import refuse_inside

    for root in splits.image_roots():
        refuse_inside(out, root)


def _audit(
    splits: DataSplits, config: TrainConfig, notes: Notes, pre: PreprocessSpec
) -> AuditReport:
    """Read every image once (read-only): refuse unusable data, note skipped files; with the
    cache on, fill the decoded-image store in the same read (unless ``--budget`` may change
    the image size)."""
    from headstart.data.audit import audit_splits
    from headstart.data.image_store import SquareSpec

    squares = SquareSpec.of(pre) if config.cache and config.budget is None else None
    report = audit_splits(splits, squares=squares, budget_bytes=cache_budget(config.cache_budget))
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


def create_model(config: TrainConfig, *, num_classes: int) -> tuple[nn.Module, BackboneSpec]:
    """Build the pretrained model with a new seeded head; check the strategy fits the model."""
    import torch

    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    model, spec = create_backbone(config.model, pretrained=True, weights_file=config.weights)
    plan_phases_for(config, spec)  # fails early on --unfreeze-stages beyond the model's stages
    torch.manual_seed(config.seed)
    return replace_head(model, spec, num_classes), spec


def fabric_for(config: TrainConfig) -> Fabric:
    from headstart.training.devices import create_fabric

    fabric = create_fabric(
        config.accelerator, config.precision, devices=config.devices, num_nodes=config.num_nodes,
        distributed=config.distributed.value,
    )  # fmt: skip
    if config.batch_size < fabric.world_size:
        raise ConfigError(
            f"--batch-size {config.batch_size} is the batch of all {fabric.world_size} processes "
            f"together and must give each at least one image; use --batch-size "
            f"{2 * fabric.world_size} or more."
        )
    return fabric


def _train_and_save(
    fabric: Fabric,
    config: TrainConfig,
    splits: DataSplits,
    model: nn.Module,
    spec: BackboneSpec,
    run: RunFolder,
    notes: Notes,
    callbacks: Sequence[Callback],
    *,
    resume: bool,
    started: float,
    deadline: float = 0.0,
    trackers: ExitStack,
    decoded: str | None = None,
) -> RunResult:
    from headstart.speed.allocator import keep_freed_memory
    from headstart.training.engine import train_phases

    classes = tuple(splits.classes)
    pre = spec.preprocessing.with_size(config.image_size)
    model = _sync_batchnorm(fabric, config, model, notes)
    data = PhaseData(fabric, config, splits, model, spec, pre, notes, decoded)
    if config.lr == AUTO:
        config = resolve_auto_lr(config, data, run, notes)
    notes.add(describe_recipe(config, spec))
    if fabric.world_size > 1:
        notes.add(describe_processes(config, fabric.world_size))
    main = fabric.is_global_zero  # the one process that tells the user and writes files
    with ExitStack() as stack:
        stack.enter_context(keep_freed_memory())  # page faults cost 20-35% of a CPU step
        listeners = [notes, *callbacks] if main else [notes]
        listeners += open_trackers(config, run, notes, trackers, enabled=main)
        settings = engine_settings(config, num_classes=len(classes), deadline=deadline)
        result = train_phases(
            fabric, model, spec, plan_phases_for(config, spec), data, settings,
            folder=run, run_config=config.to_dict(), callbacks=CallbackList(listeners),
            resume=resume,
        )  # fmt: skip
    model = result.model.cpu().eval()
    best = {k: v for k, v in result.best_metrics.items() if isinstance(v, (int, float, str))}
    if not main:  # rank 0 saves the model, tests it and writes the report
        return _run_result(run, classes, result, best, None, model, pre, spec, notes)
    _note_outcome(result, [p.name for p in result.phases if not data.on_features(p)], config,
                  run, notes)  # fmt: skip
    tested, evaluated = _test_and_save(fabric, config, splits, data, result, best, run)
    if config.budget is not None and not resume:
        note_budget(config.budget, started, notes)
    CallbackList(listeners).on_run_end(RunEnd(
        result.best_epoch, best, tested, run.model_dir,
        None if evaluated is None else run.report_dir,
    ))  # fmt: skip
    return _run_result(run, classes, result, best, tested, model, pre, spec, notes)


def _test_and_save(
    fabric: Fabric,
    config: TrainConfig,
    splits: DataSplits,
    data: PhaseData,
    result: TrainResult,
    best: dict[str, Any],
    run: RunFolder,
) -> tuple[dict[str, Any] | None, Any]:
    """Rank 0's end of a run: test the best weights, save the model folder and the report, slim
    the checkpoints; returns the test metrics and the evaluation the report shows."""
    from headstart.artifact import LoadedModel, save_model_dir

    model, spec, pre, classes = result.model, data.spec, data.pre, tuple(splits.classes)
    loaded = LoadedModel(model=model, classes=classes, preprocessing=pre, name=spec.name)
    tested, evaluated = test_metrics(
        loaded, splits, config.batch_size, data.decoded_images(build=False)
    )
    save_model_dir(
        run.model_dir, model, spec=spec, classes=classes, preprocessing=pre,
        extra=model_meta(config, splits, result, best, tested, processes=fabric.world_size),
    )  # fmt: skip
    write_run_report(run, evaluated, splits)
    _slim_checkpoints(run)
    return tested, evaluated


def _run_result(
    run: RunFolder,
    classes: tuple[str, ...],
    result: TrainResult,
    best: dict[str, Any],
    tested: dict[str, Any] | None,
    model: nn.Module,
    pre: PreprocessSpec,
    spec: BackboneSpec,
    notes: Notes,
) -> RunResult:
    return RunResult(
        run_dir=run.path, model_dir=run.model_dir, classes=classes, history=result.history,
        best_epoch=result.best_epoch, best_metrics=best, test_metrics=tested,
        model=model, preprocessing=pre, spec=spec, notes=notes.messages,
    )  # fmt: skip


def _slim_checkpoints(run: RunFolder) -> None:
    """A complete run needs no optimizer state: ``last.pt`` keeps the position and best weights."""
    from headstart.training.resume import slim_finished_checkpoint

    if run.has_checkpoint():
        freed = slim_finished_checkpoint(run.last_checkpoint)
        logging.getLogger(__name__).info(
            "run complete: %s slimmed to what a resume needs (%.1f MB freed)",
            run.last_checkpoint, freed / 1e6,
        )  # fmt: skip


def _sync_batchnorm(
    fabric: Fabric, config: TrainConfig, model: nn.Module, notes: Notes
) -> nn.Module:
    """With several GPU processes and ``--bn-stats adapt``, BatchNorm statistics are computed
    over every process's batch (SyncBatchNorm needs CUDA; elsewhere each process keeps its own)."""
    from headstart.config import BnStats

    if fabric.world_size == 1 or BnStats(config.bn_stats) is not BnStats.ADAPT:
        return model
    if fabric.device.type != "cuda":
        notes.add("BatchNorm statistics adapt per process (SyncBatchNorm needs CUDA GPUs); "
                  "DDP keeps rank 0's")  # fmt: skip
        return model
    import torch

    notes.add("BatchNorm statistics are synchronised across the processes (SyncBatchNorm)")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _note_outcome(
    result: TrainResult, image_phases: list[str], config: TrainConfig, run: RunFolder, notes: Notes
) -> None:
    """Tell the user how training went: speed settings, EMA, divergence, broken images."""
    note_speed(result, image_phases, config, notes)
    if result.ema_used:
        notes.add(f"the saved weights are the moving average (--ema) of epoch {result.best_epoch}")
    if result.diverged:
        notes.add(result.diverged, level=logging.WARNING)
    if result.failures:
        notes.add(
            f"{len(result.failures)} image(s) broke during training and were replaced; see "
            f"{run.data_report_file}",
            level=logging.WARNING,
        )
        run.add_run_failures(result.failures)
