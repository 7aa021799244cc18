"""Run a whole training: strategy phases, epochs, metrics.csv, checkpoints, best weights.

Fabric across phases: each phase changes which parameters train, so each phase sets the
trainable stages on the *unwrapped* model, builds a fresh optimizer over its parameter groups and
calls ``fabric.setup(model, optimizer)`` again on the unwrapped model. A distributed wrapper (DDP)
is thus rebuilt with the new set of trainable parameters, and on one device the call only moves
the model and wraps it for precision. Data loaders are set up once.

Exact resume: ``checkpoints/last.pt`` (written at every epoch end, every
``checkpoint_every_steps`` steps, and when SIGINT / SIGTERM stops the run) holds the model,
optimizer, schedule, phase position, steps done in the current epoch, early-stopping and best
state, history, the global RNG states and the training loader's generator state at the start of
the epoch. Resuming replays the epoch's sample order from that generator, skips the batches
already trained and restores the RNG states, so a run on the CPU with ``num_workers=0`` ends with
the same weights, bit for bit, however often it was killed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader

from headstart.config import TrainConfig
from headstart.errors import CheckpointError, ConfigError, HeadstartError
from headstart.metrics import macro_f1
from headstart.surgery import (
    BnPolicy,
    param_groups,
    prefers_channels_last,
    set_trainable_stages,
    train_mode,
)
from headstart.training.accel import (
    SpeedSettings,
    describe,
    has_depthwise,
    keep_freed_memory,
    set_float32_depthwise,
    training_candidates,
    tune_speed,
)
from headstart.training.callbacks import BestTracker, EarlyStopping
from headstart.training.checkpoint import (
    atomic_write_text,
    capture_rng_state,
    load_latest_checkpoint,
    save_checkpoint,
    sweep_temporaries,
)
from headstart.training.loop import (
    BatchCallback,
    EpochProgress,
    StepCallback,
    evaluate,
    train_one_epoch,
)
from headstart.training.optim import build_optimizer, build_scheduler
from headstart.training.strategies import Phase, plan_phases
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "HISTORY_COLUMNS",
    "TrainResult",
    "TrainingInterrupted",
    "create_fabric",
    "resolve_checkpoint",
    "run_training",
]

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
_RESUME_KEYS = (
    "format",
    "model",
    "optimizer",
    "scheduler",
    "phase_index",
    "epoch_in_phase",
    "phases",
    "early_stopping",
    "best",
    "history",
    "config",
    "rng",
    "loader_generator",
)
_FREE_SETTINGS = ("data", "out", "checkpoint_every_steps")
"""Settings that may change on resume without changing the result."""
_INEXACT_SETTINGS = ("num_workers", "accelerator", "precision")
"""Settings that may change on resume, with a warning that the result is no longer bit-exact."""


class TrainingInterrupted(HeadstartError):
    """Training stopped on SIGINT / SIGTERM after writing a checkpoint to resume from.

    Attributes:
        checkpoint: The checkpoint written just before stopping.
    """

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


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
        speed: Per phase name, the layout and autocast dtype it trained with
            (:meth:`SpeedSettings.to_dict`).
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    model: nn.Module
    phases: list[Phase]
    stopped_early: bool = False
    speed: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Progress:
    """Mutable state of a run that goes into checkpoints."""

    tracker: BestTracker
    stopper: EarlyStopping
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


@dataclass
class _StopRequest:
    """Set by the signal handler; the loop checks it after every step."""

    signum: int | None = None


@dataclass
class _Start:
    """Where training (re)starts: a phase, epochs done in it, and the states to restore."""

    phase_index: int = 0
    epochs_done: int = 0
    within: EpochProgress | None = None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    loader_generator: torch.Tensor | None = None
    speed: dict[str, Any] | None = None
    checkpoint_first: bool = False


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
    checkpoint_every: int = 0
    stop: _StopRequest = field(default_factory=_StopRequest)
    speed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def last_path(self) -> Path:
        """``checkpoints/last.pt`` of this run."""
        return self.run_dir / "checkpoints" / "last.pt"


def create_fabric(config: TrainConfig) -> Fabric:
    """A one-device Fabric for ``config.accelerator`` and ``config.precision``.

    ``precision="auto"`` makes a float32 Fabric; the runner then autocasts each phase as a timed
    trial decides (:func:`headstart.training.accel.training_candidates`).
    """
    try:
        precision: Any = "32-true" if config.precision == "auto" else config.precision
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
    resume_from: str | Path | None = None,
    checkpoint_every_steps: int = 0,
    prior: TrainResult | None = None,
) -> TrainResult:
    """Train ``model`` (whose head is already replaced) through the phases of ``config.strategy``.

    With ``config.precision="auto"`` each phase first times float32 against bfloat16 autocast
    on a few steps of a random batch (cached per host, model and phase in ``tuning.json``) and
    trains with the faster; the choice is kept in the checkpoints, so a resumed run uses it too.

    Every epoch appends a history row, rewrites ``run_dir/metrics.csv``, calls ``on_epoch(row)``
    and writes ``run_dir/checkpoints/last.pt`` (the one before is kept as ``last.prev.pt``); a
    new best by ``config.monitor`` also writes ``checkpoints/best.pt``. Early stopping
    (``config.patience``) acts within the last phase. Seed before building the model's head for
    fully reproducible runs; this function seeds everything else with ``config.seed``.

    SIGINT (Ctrl-C) or SIGTERM stops training after the current step with a checkpoint and
    raises :class:`TrainingInterrupted`; a second Ctrl-C stops at once (``KeyboardInterrupt``).

    Args:
        resume_from: A checkpoint file or a run folder to continue from; on CPU with
            ``num_workers=0`` the result is bitwise identical to an uninterrupted run. The
            model, loaders and ``config`` must be built as for the original run.
        checkpoint_every_steps: Also write ``last.pt`` every this many steps within an epoch
            (0: at epoch ends only).
        prior: The first phases, already trained another way (two-phase's head phase on cached
            features), with ``model`` holding their best weights: their history and best epoch
            count as this run's, training continues with the next phase, and a checkpoint is
            written before its first step so that resuming never repeats them.

    Returns:
        The history and the model with the best epoch's weights loaded.
    """
    fabric = fabric or create_fabric(config)
    fabric.seed_everything(config.seed, workers=True)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, run_dir / "checkpoints"):
        sweep_temporaries(folder)
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
        checkpoint_every=max(0, int(checkpoint_every_steps)),
    )
    if resume_from is not None:
        start = _resume(run, resolve_checkpoint(resume_from))
    elif prior is not None:
        start = _continue_after(run, prior)
    else:
        start = _Start()
    try:
        with _stop_on_signals() as run.stop, keep_freed_memory():
            stopped = _run_phases(run, start)
    finally:
        set_float32_depthwise(model, False)  # the plain layer classes again (same parameters)
    result = _finish(model, run.progress, run.phases, stopped)
    result.speed = dict(run.speed)
    return result


def _continue_after(run: _Run, prior: TrainResult) -> _Start:
    """Take over the history and best weights of phases trained elsewhere; start the next one."""
    if [p.to_dict() for p in prior.phases] != [
        p.to_dict() for p in run.phases[: len(prior.phases)]
    ]:
        raise ConfigError("the phases trained before do not match the strategy's first phases.")
    progress = run.progress
    for row in prior.history:
        progress.history.append(row)
        progress.tracker.update(row[progress.tracker.monitor], row["epoch"])
    # the model holds the prior's best weights; keep them in case no later epoch beats them
    progress.best_state = {
        k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()
    }
    if run.fabric.is_global_zero:
        _save_best(run.run_dir, progress.best_state, prior.history[progress.tracker.best_epoch - 1])
        write_metrics_csv(run.run_dir / "metrics.csv", progress.history)
    run.speed.update(prior.speed)
    return _Start(phase_index=len(prior.phases), checkpoint_first=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """The ``last.pt`` meant by ``path``: a checkpoint file, a run folder or its checkpoints/."""
    path = Path(path)
    if path.is_dir():
        nested = path / "checkpoints" / "last.pt"
        return nested if (path / "checkpoints").is_dir() else path / "last.pt"
    return path


def _run_phases(run: _Run, start: _Start) -> bool:
    """Run the phases from ``start`` on; return whether early stopping ended the run."""
    if run.progress.stopper.stopped:
        return True
    for index in range(start.phase_index, len(run.phases)):
        first = start if index == start.phase_index else _Start(phase_index=index)
        if _run_phase(run, index, first):
            return True
    return False


def _run_phase(run: _Run, index: int, start: _Start) -> bool:
    """Train one phase epoch by epoch from ``start``; return whether early stopping ended it."""
    phase, config = run.phases[index], run.config
    steps = len(run.device_loaders[0])
    wrapped, optimizer, scheduler, speed = _setup_phase(run, phase, steps, saved=start.speed)
    run.speed[phase.name] = speed.to_dict()
    last_phase = index == len(run.phases) - 1
    if start.optimizer is not None and start.scheduler is not None:
        optimizer.load_state_dict(start.optimizer)
        scheduler.load_state_dict(start.scheduler)
    elif last_phase:  # early stopping acts within the last phase only, with its full patience
        run.progress.stopper.reset()
    logger.info(
        "phase %d/%d: %s for %d epochs, lr %.3g, %s%s",
        *(index + 1, len(run.phases), phase.name, phase.epochs, phase.lr, describe(speed)),
        f" (resuming after epoch {start.epochs_done} of the phase)" if start.epochs_done else "",
    )
    losses = (nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), nn.CrossEntropyLoss())
    generator = getattr(run.loaders[0], "generator", None)
    for epoch_in_phase in range(start.epochs_done + 1, phase.epochs + 1):
        first = epoch_in_phase == start.epochs_done + 1
        if first and start.loader_generator is not None and generator is not None:
            generator.set_state(start.loader_generator)
        epoch_start = generator.get_state() if generator is not None else None

        def position(within: EpochProgress | None, done: int = epoch_in_phase - 1) -> dict:
            """Checkpoint fields that say where in the run this state belongs."""
            return _position(index, done, optimizer, scheduler, within, run.phases, speed)

        def on_step(within: EpochProgress, gen: Any = epoch_start) -> None:
            _after_step(run, position(within), within, gen, steps)

        if first and start.checkpoint_first:  # the phases before were trained elsewhere
            _save_last(run, position(None), epoch_start)

        stats = _train_and_validate(
            run.fabric, wrapped, optimizer, scheduler, run.device_loaders, losses, bn=run.bn,
            on_batch=run.on_batch, on_step=on_step, speed=speed,
            start=start.within if first else None, rng=start.rng if first else None,
        )  # fmt: skip
        if _end_epoch(run, stats, phase.name, last_phase, position(None, epoch_in_phase)):
            return True
    return False


def _position(
    index: int,
    epochs_done: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    within: EpochProgress | None,
    phases: list[Phase],
    speed: SpeedSettings,
) -> dict[str, Any]:
    """The part of a checkpoint that depends on where training stands."""
    return {
        "speed": speed.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "phase_index": index,
        "epoch_in_phase": epochs_done,
        "within_epoch": within.state_dict() if within is not None else None,
        "phases": [p.to_dict() for p in phases],
    }


def _after_step(
    run: _Run,
    state: dict[str, Any],
    within: EpochProgress,
    epoch_start: torch.Tensor | None,
    steps: int,
) -> None:
    """Write a mid-epoch checkpoint when one is due; stop here if a signal asked to."""
    due = run.checkpoint_every > 0 and within.batches % run.checkpoint_every == 0
    if run.stop.signum is None and not (due and within.batches < steps):
        return
    _save_last(run, state, epoch_start)
    if run.stop.signum is not None:
        _interrupt(run, f"step {within.batches}/{steps} of epoch {len(run.progress.history) + 1}")


def _end_epoch(
    run: _Run, stats: dict[str, Any], phase: str, last_phase: bool, state: dict[str, Any]
) -> bool:
    """Record the epoch, write ``last.pt``, call ``on_epoch``; return whether to stop early."""
    row = {"epoch": len(run.progress.history) + 1, "phase": phase, **stats}
    stop = last_phase and run.progress.stopper.step(row[run.config.monitor])
    _record_epoch(run.fabric, run.model, row, run.progress, run.run_dir)
    generator = getattr(run.loaders[0], "generator", None)
    _save_last(run, state, generator.get_state() if generator is not None else None)
    if run.on_epoch is not None:
        run.on_epoch(row)
    if stop:
        logger.info(
            "early stopping: %s did not improve for %d epochs",
            *(run.config.monitor, run.config.patience),
        )
    elif run.stop.signum is not None:
        _interrupt(run, f"the end of epoch {row['epoch']}")
    return stop


def _interrupt(run: _Run, where: str) -> None:
    """Raise :class:`TrainingInterrupted` for the checkpoint just written."""
    name = signal.Signals(run.stop.signum).name if run.stop.signum else "a signal"
    raise TrainingInterrupted(
        f"training stopped by {name} at {where}; checkpoint saved to {run.last_path}. "
        f"Continue with: headstart train --resume {run.run_dir}",
        run.last_path,
    )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopRequest]:
    """While active, SIGINT / SIGTERM ask the loop to stop after the current step.

    A second signal raises ``KeyboardInterrupt`` at once. Handlers are installed only in the
    main thread and the previous ones are put back afterwards.
    """
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        if request.signum is not None:
            raise KeyboardInterrupt
        request.signum = signum
        logger.warning(
            "%s received: stopping after the current step (Ctrl-C again to quit at once)",
            signal.Signals(signum).name,
        )

    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _resume(run: _Run, path: Path) -> _Start:
    """Load the latest usable checkpoint into ``run``; return where to continue."""
    state, used = load_latest_checkpoint(path, required=_RESUME_KEYS)
    _check_compatible(state, run, used)
    run.model.load_state_dict(state["model"])
    progress = run.progress
    progress.tracker.load_state_dict(state["best"])
    progress.stopper.load_state_dict(state["early_stopping"])
    progress.history = list(state["history"])
    progress.best_state = state.get("best_model")
    if run.fabric.is_global_zero:
        write_metrics_csv(run.run_dir / "metrics.csv", progress.history)
    start = _Start(
        phase_index=int(state["phase_index"]),
        epochs_done=int(state["epoch_in_phase"]),
        optimizer=state["optimizer"],
        scheduler=state["scheduler"],
        rng=state["rng"],
        loader_generator=state["loader_generator"],
        speed=_saved_speed(state, run),
    )
    if state.get("within_epoch") is not None:
        start.within = EpochProgress.from_state_dict(state["within_epoch"])
    elif start.epochs_done >= run.phases[start.phase_index].epochs:  # phase done: next one
        start = _Start(
            start.phase_index + 1, rng=start.rng, loader_generator=start.loader_generator
        )
    logger.info(
        "resuming from %s: %d epochs done%s",
        *(
            used,
            len(progress.history),
            f", {start.within.batches} steps into the next" if start.within else "",
        ),
    )
    return start


def _saved_speed(state: dict[str, Any], run: _Run) -> dict[str, Any] | None:
    """The checkpoint's speed settings, if they still apply (same device type and precision).

    ``--precision`` and ``--accelerator`` may change on resume; then the phase chooses again.
    """
    speed = state.get("speed")
    if speed is None or speed.get("device_type") != run.fabric.device.type:
        return None
    return speed if state["config"].get("precision") == run.config.precision else None


def _check_compatible(state: dict[str, Any], run: _Run, used: Path) -> None:
    """Refuse a checkpoint whose settings or phases would make a different run."""
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {used} has format {state['format']}, this headstart reads "
            f"{CHECKPOINT_FORMAT}; resume with the headstart version that wrote it."
        )
    current = run.config.to_dict()
    # settings added after the checkpoint was written take their defaults
    saved = {**TrainConfig().to_dict(), **state["config"]}
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    inexact = [k for k in changed if k in _INEXACT_SETTINGS]
    if inexact:
        logger.warning("resuming with other %s: not bit-exact any more", ", ".join(inexact))
    wrong = [k for k in changed if k not in _FREE_SETTINGS + _INEXACT_SETTINGS]
    if wrong or state["phases"] != [p.to_dict() for p in run.phases]:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in wrong)
        raise CheckpointError(
            f"checkpoint {used} was written with other settings ({detail or 'phases'}); resume "
            "with the run's own config.yaml, or start a new run."
        )


def _setup_phase(
    run: _Run, phase: Phase, steps_per_epoch: int, *, saved: dict[str, Any] | None = None
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, SpeedSettings]:
    """Freeze for ``phase``, build optimizer + schedule, pick the speed settings, set up Fabric.

    Args:
        saved: Speed settings from the checkpoint being resumed (used instead of a trial).
    """
    fabric, config, model, spec = run.fabric, run.config, run.model, run.spec
    set_trainable_stages(model, spec, phase.trainable_stages, bn=run.bn)
    model.to(fabric.device)  # before the optimizer (fused kernels depend on the device) + trial
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
    speed = SpeedSettings(**saved) if saved is not None else _choose_speed(run, phase)
    speed.prepare_model(model)  # memory format only: compile is not a training candidate
    wrapped, fabric_optimizer = fabric.setup(model, optimizer)
    return wrapped, fabric_optimizer, scheduler, speed


def _choose_speed(run: _Run, phase: Phase) -> SpeedSettings:
    """Layout and autocast for ``phase``: a timed trial under ``--precision auto``.

    With an explicit precision, Fabric applies it and only the layout is set (channels-last for
    convolutional networks). The trial times one warm-up and two steps of forward + backward per
    candidate on a random batch of the training shape, with the phase's frozen stages and
    BatchNorm modes, and leaves weights, statistics and the RNG as they were.
    """
    device = run.fabric.device
    conv = prefers_channels_last(run.model)
    if run.config.precision != "auto":
        return SpeedSettings(device.type, channels_last=conv)
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    candidates = training_candidates(
        device.type, conv=conv, depthwise=has_depthwise(run.model), bf16_supported=bf16
    )
    if len(candidates) == 1:
        return candidates[0]
    train_mode(run.model, bn=run.bn)
    key = f"{run.spec.name}|{phase.name}:{phase.trainable_stages}|bn:{run.bn.value}"
    batch = _trial_batch(run.loaders[0], run.config.batch_size).to(device)
    chosen = tune_speed(run.model, batch, key=key, mode="train", steps=2, candidates=candidates)
    return SpeedSettings(**run.fabric.broadcast(chosen.to_dict(), src=0))


def _trial_batch(loader: DataLoader, batch_size: int) -> torch.Tensor:
    """A random batch shaped like the training batches (the dataset's RNG draws are undone)."""
    with torch.random.fork_rng(devices=[]):
        image = loader.dataset[0][0]
    n = min(batch_size, len(loader.dataset))  # type: ignore[arg-type]
    return torch.randn(n, *image.shape, generator=torch.Generator().manual_seed(0))


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
    on_step: StepCallback | None = None,
    start: EpochProgress | None = None,
    rng: dict[str, Any] | None = None,
    speed: SpeedSettings | None = None,
) -> dict[str, Any]:
    """One epoch of training and validation; the history row without epoch and phase.

    ``val_loss`` is plain cross-entropy (no label smoothing), comparable across settings.
    ``start`` and ``rng`` continue an epoch from a mid-epoch checkpoint.
    """
    if start is not None and start.batches:  # the lr at the epoch's first step, as logged
        lr = scheduler.base_lrs[0] * scheduler.lr_lambdas[0](scheduler.last_epoch - start.batches)
    else:
        lr = optimizer.param_groups[0]["lr"]  # the head's group comes first
    train = train_one_epoch(
        fabric, model, loaders[0], optimizer, scheduler, losses[0], bn=bn, on_batch=on_batch,
        start=start, rng_state=rng, on_step=on_step, speed=speed,
    )  # fmt: skip
    val = evaluate(fabric, model, loaders[1], losses[1], speed=speed)
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
            _save_best(run_dir, progress.best_state, row)
    if fabric.is_global_zero:
        write_metrics_csv(run_dir / "metrics.csv", progress.history)


def _save_best(run_dir: Path, weights: dict[str, torch.Tensor], row: dict[str, Any]) -> None:
    """Write ``checkpoints/best.pt``: the best epoch's weights and its history row."""
    best = {"format": CHECKPOINT_FORMAT, "model": weights, "epoch": row["epoch"], "metrics": row}
    save_checkpoint(run_dir / "checkpoints" / "best.pt", best)


def _save_last(run: _Run, state: dict[str, Any], loader_generator: torch.Tensor | None) -> None:
    """Write everything an exact resume needs to ``checkpoints/last.pt`` (keeping the previous).

    Args:
        state: The position fields from :func:`_position`.
        loader_generator: The training loader's generator state at the start of the epoch that
            the resumed run trains next (or continues).
    """
    if run.fabric.is_global_zero:
        state.update(
            format=CHECKPOINT_FORMAT,
            model=run.model.state_dict(),
            best_model=run.progress.best_state,
            epoch=len(run.progress.history),
            early_stopping=run.progress.stopper.state_dict(),
            best=run.progress.tracker.state_dict(),
            history=run.progress.history,
            config=run.config.to_dict(),
            rng=capture_rng_state(),
            loader_generator=loader_generator,
        )
        save_checkpoint(run.last_path, state, keep_previous=True)
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
