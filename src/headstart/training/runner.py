"""Run a whole training: strategy phases, epochs, metrics.csv, checkpoints, best weights.

Fabric across phases: each phase changes which parameters train, so each phase sets the
trainable stages on the *unwrapped* model, builds a fresh optimizer over its parameter groups and
calls ``fabric.setup(model, optimizer)`` again on the unwrapped model. A distributed wrapper (DDP)
is thus rebuilt with the new set of trainable parameters, and on one device the call only moves
the model and wraps it for precision. Data loaders are set up once.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader

from headstart.config import TrainConfig
from headstart.errors import ConfigError
from headstart.metrics import macro_f1
from headstart.surgery import BnPolicy, param_groups, set_trainable_stages
from headstart.training.callbacks import BestTracker, EarlyStopping
from headstart.training.checkpoint import atomic_write_text, capture_rng_state, save_checkpoint
from headstart.training.loop import BatchCallback, evaluate, train_one_epoch
from headstart.training.optim import build_optimizer, build_scheduler
from headstart.training.strategies import Phase, plan_phases
from headstart.zoo.spec import BackboneSpec

__all__ = ["HISTORY_COLUMNS", "TrainResult", "create_fabric", "run_training"]

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_f1",
    "lr",
    "seconds",
    "images_per_s",
)
"""Columns of metrics.csv; ``lr`` is the head's learning rate at the epoch's first step and
``val_loss`` is plain cross-entropy (no label smoothing)."""
CHECKPOINT_FORMAT = 1


@dataclass
class TrainResult:
    """The outcome of :func:`run_training`.

    Attributes:
        history: One row per epoch with the keys of ``HISTORY_COLUMNS`` (epochs count from 1).
        best_epoch: Epoch whose weights were kept, by ``config.monitor``.
        best_metrics: That epoch's history row.
        model: The unwrapped model with the best weights loaded, on the training device.
        phases: The phases that were planned.
        stopped_early: Whether early stopping ended the run before ``config.epochs``.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    model: nn.Module
    phases: list[Phase]
    stopped_early: bool = False


@dataclass
class _Progress:
    """Mutable state of a run that goes into checkpoints."""

    tracker: BestTracker
    stopper: EarlyStopping
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


@dataclass
class _Run:
    """Everything one run needs, passed to the helpers as one explicit value."""

    fabric: Fabric
    config: TrainConfig
    model: nn.Module
    spec: BackboneSpec
    phases: list[Phase]
    loaders: tuple[DataLoader, DataLoader]
    device_loaders: tuple[Any, ...]
    run_dir: Path
    bn: BnPolicy
    on_epoch: Callable[[dict[str, Any]], None] | None
    on_batch: BatchCallback | None
    progress: _Progress


def create_fabric(config: TrainConfig) -> Fabric:
    """A one-device Fabric for ``config.accelerator`` and ``config.precision``."""
    try:
        precision: Any = config.precision  # validated by Fabric
        return Fabric(accelerator=config.accelerator, devices=1, precision=precision)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"cannot use accelerator {config.accelerator!r} with precision {config.precision!r}: "
            f"{exc}; try --accelerator cpu --precision 32-true."
        ) from None


def run_training(
    config: TrainConfig,
    model: nn.Module,
    spec: BackboneSpec,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    run_dir: Path,
    fabric: Fabric | None = None,
    bn: BnPolicy = BnPolicy.FROZEN,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_batch: BatchCallback | None = None,
) -> TrainResult:
    """Train ``model`` (whose head is already replaced) through the phases of ``config.strategy``.

    Every epoch appends a history row, rewrites ``run_dir/metrics.csv``, calls ``on_epoch(row)``
    and writes ``run_dir/checkpoints/last.pt``; a new best by ``config.monitor`` also writes
    ``checkpoints/best.pt``. Early stopping (``config.patience``) acts within the last phase.
    Seed before building the model's head for fully reproducible runs; this function seeds
    everything else with ``config.seed``.

    Returns:
        The history and the model with the best epoch's weights loaded.
    """
    fabric = fabric or create_fabric(config)
    fabric.seed_everything(config.seed, workers=True)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(
        fabric=fabric,
        config=config,
        model=model,
        spec=spec,
        phases=plan_phases(config, spec),
        loaders=(train_loader, val_loader),
        device_loaders=tuple(fabric.setup_dataloaders(train_loader, val_loader)),
        run_dir=run_dir,
        bn=bn,
        on_epoch=on_epoch,
        on_batch=on_batch,
        progress=_Progress(
            BestTracker(config.monitor), EarlyStopping(config.monitor, patience=config.patience)
        ),
    )
    stopped = False
    for index in range(len(run.phases)):
        if _run_phase(run, index):
            stopped = True
            break
    return _finish(model, run.progress, run.phases, stopped)


def _run_phase(run: _Run, index: int) -> bool:
    """Train one phase epoch by epoch; return whether early stopping ended the run."""
    phase, config = run.phases[index], run.config
    steps = len(run.device_loaders[0])
    wrapped, optimizer, scheduler = _setup_phase(
        run.fabric, config, run.model, run.spec, phase, steps
    )
    last_phase = index == len(run.phases) - 1
    if last_phase:  # early stopping acts within the last phase only, with its full patience
        run.progress.stopper.reset()
    logger.info(
        "phase %d/%d: %s for %d epochs, lr %.3g",
        *(index + 1, len(run.phases), phase.name, phase.epochs, phase.lr),
    )
    losses = (nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), nn.CrossEntropyLoss())
    for epoch_in_phase in range(1, phase.epochs + 1):
        stats = _train_and_validate(
            run.fabric, wrapped, optimizer, scheduler, run.device_loaders, losses,
            bn=run.bn, on_batch=run.on_batch,
        )  # fmt: skip
        row = {"epoch": len(run.progress.history) + 1, "phase": phase.name, **stats}
        stop = last_phase and run.progress.stopper.step(row[config.monitor])
        _record_epoch(run.fabric, run.model, row, run.progress, run.run_dir)
        state: dict[str, Any] = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "phase_index": index,
            "epoch_in_phase": epoch_in_phase,
            "phases": [p.to_dict() for p in run.phases],
        }
        _save_last(run, state)
        if run.on_epoch is not None:
            run.on_epoch(row)
        if stop:
            logger.info(
                "early stopping: %s did not improve for %d epochs", config.monitor, config.patience
            )
            return True
    return False


def _setup_phase(
    fabric: Fabric,
    config: TrainConfig,
    model: nn.Module,
    spec: BackboneSpec,
    phase: Phase,
    steps_per_epoch: int,
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Freeze for ``phase``, build optimizer + schedule, and set both up with Fabric."""
    set_trainable_stages(model, spec, phase.trainable_stages)
    groups = param_groups(
        model,
        spec,
        lr=phase.lr,
        backbone_lr_factor=config.backbone_lr_factor,
        layer_decay=config.layer_decay,
        weight_decay=config.weight_decay,
    )
    optimizer = build_optimizer(
        groups,
        config.optimizer,
        lr=phase.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    total = max(1, phase.epochs * steps_per_epoch)
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if warmup > total // 2:
        logger.info(
            "warm-up of %d steps shortened to %d (half of phase %s)", warmup, total // 2, phase.name
        )
    scheduler = build_scheduler(optimizer, total_steps=total, warmup_steps=warmup)
    wrapped, fabric_optimizer = fabric.setup(model, optimizer)
    return wrapped, fabric_optimizer, scheduler


def _train_and_validate(
    fabric: Fabric,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    loaders: tuple[DataLoader, DataLoader],
    losses: tuple[nn.Module, nn.Module],
    *,
    bn: BnPolicy,
    on_batch: BatchCallback | None,
) -> dict[str, Any]:
    """One epoch of training and validation; the history row without epoch and phase.

    ``val_loss`` is plain cross-entropy (no label smoothing), comparable across settings.
    """
    lr = optimizer.param_groups[0]["lr"]  # the head's group comes first
    train = train_one_epoch(
        fabric, model, loaders[0], optimizer, scheduler, losses[0], bn=bn, on_batch=on_batch
    )
    val = evaluate(fabric, model, loaders[1], losses[1])
    num_classes = val["logits"].shape[1] if val["logits"].numel() else 1
    return {
        "train_loss": train["loss"],
        "train_acc": train["acc"],
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "val_f1": macro_f1(val["logits"].argmax(dim=1), val["targets"], num_classes),
        "lr": lr,
        "seconds": train["seconds"] + val["seconds"],
        "images_per_s": train["images_per_s"],
    }


def _record_epoch(
    fabric: Fabric, model: nn.Module, row: dict[str, Any], progress: _Progress, run_dir: Path
) -> None:
    """Append ``row``, rewrite metrics.csv and keep the weights if this epoch is the best."""
    progress.history.append(row)
    logger.info(
        "epoch %d (%s): train loss %.4f acc %.3f | val loss %.4f acc %.3f f1 %.3f | %.1fs",
        *(
            row[k]
            for k in (
                "epoch",
                "phase",
                "train_loss",
                "train_acc",
                "val_loss",
                "val_acc",
                "val_f1",
                "seconds",
            )
        ),
    )
    if progress.tracker.update(row[progress.tracker.monitor], row["epoch"]):
        progress.best_state = {
            k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
        }
        if fabric.is_global_zero:
            best = {
                "format": CHECKPOINT_FORMAT,
                "model": progress.best_state,
                "epoch": row["epoch"],
                "metrics": row,
            }
            save_checkpoint(run_dir / "checkpoints" / "best.pt", best)
    if fabric.is_global_zero:
        write_metrics_csv(run_dir / "metrics.csv", progress.history)


def _save_last(run: _Run, state: dict[str, Any]) -> None:
    """Write everything an exact resume needs to ``checkpoints/last.pt``."""
    if run.fabric.is_global_zero:
        generator = getattr(run.loaders[0], "generator", None)
        state.update(
            format=CHECKPOINT_FORMAT,
            model=run.model.state_dict(),
            epoch=len(run.progress.history),
            early_stopping=run.progress.stopper.state_dict(),
            best=run.progress.tracker.state_dict(),
            history=run.progress.history,
            config=run.config.to_dict(),
            rng=capture_rng_state(),
            loader_generator=generator.get_state() if generator is not None else None,
        )
        save_checkpoint(run.run_dir / "checkpoints" / "last.pt", state)
    run.fabric.barrier()


def _finish(
    model: nn.Module, progress: _Progress, phases: list[Phase], stopped: bool
) -> TrainResult:
    """Load the best weights into ``model`` and package the result."""
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    best_epoch = progress.tracker.best_epoch
    best_row = progress.history[best_epoch - 1] if best_epoch >= 1 else progress.history[-1]
    return TrainResult(
        history=progress.history,
        best_epoch=best_row["epoch"],
        best_metrics=dict(best_row),
        model=model,
        phases=phases,
        stopped_early=stopped,
    )


def write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite the whole metrics.csv atomically from ``history``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())
