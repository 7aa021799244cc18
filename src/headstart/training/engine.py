"""The training engine: the phases of a plan, epoch by epoch, whatever the batches are.

One engine trains every strategy. A phase is a phase whether its batches are decoded images or
cached features of a frozen body (:mod:`headstart.training.batches`): optimizer and schedule
construction, history rows, best-epoch selection, early stopping, checkpoints and metrics.csv are
written here once. Every phase starts from the seed (global RNGs and the batches' generator) and
from the best weights so far, so two-phase fine-tuning continues from the head phase's best epoch
and a resume at a phase boundary needs nothing but the weights.

Checkpoints (``RunFolder.last_checkpoint``) are written at every epoch end, every
``checkpoint_every_steps`` steps and when SIGINT / SIGTERM stops the run; see
:mod:`headstart.training.resume` for what they hold and how a resume is bitwise exact. Each
phase's recipe (loss, mixing, accumulation, clipping, weight average) comes from
:mod:`headstart.training.recipe`; lr.csv gets the learning rates of every step at every epoch end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning_fabric import Fabric
from lightning_fabric.utilities.seed import seed_everything
from torch import nn

from headstart.run_folder import RunFolder
from headstart.speed.allocator import keep_freed_memory
from headstart.speed.depthwise import set_float32_depthwise
from headstart.speed.settings import describe
from headstart.training.batches import PhaseBatches
from headstart.training.callbacks import BatchEnd, Callback
from headstart.training.checkpoint import capture_rng_state, save_checkpoint
from headstart.training.divergence import Diverged, blown_up, divergence_note
from headstart.training.loop import EpochProgress, train_epoch
from headstart.training.lr_trace import LrTrace, step_lr
from headstart.training.phase import PhaseSetup, setup_phase
from headstart.training.ranks import (
    agree_on_step,
    all_rng_states,
    decided_by_rank_zero,
    epoch_start_for_rank,
    rng_for_rank,
    summed_progress,
)
from headstart.training.recipe import PhaseRecipe, class_count, phase_recipe
from headstart.training.resume import (
    CHECKPOINT_FORMAT,
    ResumePoint,
    load_resume_state,
    resume_point,
)
from headstart.training.settings import EngineSettings, TrainResult
from headstart.training.signals import StopRequest, TrainingInterrupted, stop_on_signals
from headstart.training.strategies import Phase
from headstart.training.tracking import BestTracker, EarlyStopping, deadline_note
from headstart.training.validation import validate_epoch
from headstart.zoo.spec import BackboneSpec

__all__ = ["Diverged", "EngineSettings", "TrainResult", "train_phases"]

logger = logging.getLogger(__name__)

BatchesFor = Callable[[Phase], PhaseBatches]
"""Gives the batches of a phase when it starts (features are extracted only when needed)."""


@dataclass
class _Run:
    """Everything one call of :func:`train_phases` works on, passed to its helpers as one value."""

    fabric: Fabric
    model: nn.Module
    spec: BackboneSpec
    phases: list[Phase]
    batches_for: BatchesFor
    settings: EngineSettings
    folder: RunFolder
    run_config: Mapping[str, Any]
    callbacks: Callback
    tracker: BestTracker
    stopper: EarlyStopping
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    stop: StopRequest = field(default_factory=StopRequest)
    stop_agreed: int | None = None  # a stop signal every process knows of (see ``ranks``)
    speed: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    lr_trace: LrTrace = field(default_factory=LrTrace)


def train_phases(
    fabric: Fabric,
    model: nn.Module,
    spec: BackboneSpec,
    phases: Sequence[Phase],
    batches_for: BatchesFor,
    settings: EngineSettings,
    *,
    folder: RunFolder,
    run_config: Mapping[str, Any],
    callbacks: Callback | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` (whose head is already replaced) through ``phases``.

    Every epoch appends a history row, rewrites metrics.csv, calls ``callbacks.on_epoch_end`` and
    writes ``last.pt`` (the one before is kept as ``last.prev.pt``); a new best by
    ``settings.monitor`` also writes ``best.pt``. Early stopping acts within the last phase.
    SIGINT (Ctrl-C) or SIGTERM stops training after the current step with a checkpoint and raises
    :class:`TrainingInterrupted`; a second Ctrl-C stops at once (``KeyboardInterrupt``).

    Args:
        batches_for: The batches of each phase, asked for when the phase starts.
        folder: Where metrics.csv and the checkpoints go.
        run_config: The run's settings, kept in checkpoints so a resume can refuse other ones.
        resume: Continue from ``folder``'s last checkpoint; the model, batches and settings must
            be built as for the original run.

    Returns:
        The history and the model with the best epoch's weights loaded.
    """
    run = _Run(
        fabric, model, spec, list(phases), batches_for, settings, folder, run_config,
        callbacks or Callback(), BestTracker(settings.monitor),
        EarlyStopping(settings.monitor, patience=settings.patience),
    )  # fmt: skip
    folder.sweep_temporaries()
    run.callbacks.on_plan(run.phases)
    start = _resume(run) if resume else ResumePoint()
    stopped, diverged = run.stopper.stopped, None
    try:
        with stop_on_signals() as run.stop, keep_freed_memory():
            for index in range(start.phase_index, len(run.phases)):
                if stopped:
                    break
                point = start if index == start.phase_index else ResumePoint(index)
                stopped = _train_phase(run, index, point)
    except Diverged as exc:
        diverged = _after_divergence(run, exc)
    finally:
        set_float32_depthwise(model, False)  # the plain layer classes again (same parameters)
    result = _finish(run, stopped or diverged is not None)
    result.diverged = diverged
    return result


def _resume(run: _Run) -> ResumePoint:
    """Load the latest usable checkpoint into ``run``; return where to continue."""
    state, used = load_resume_state(run.folder.last_checkpoint, run.phases, run.run_config)
    run.model.load_state_dict(state["model"])
    run.tracker.load_state_dict(state["best"])
    run.stopper.load_state_dict(state["early_stopping"])
    run.history = list(state["history"])
    run.best_state = state.get("best_model")
    run.speed = dict(state.get("speeds") or {})
    run.lr_trace.load_state_dict(state.get("lr_trace") or ())
    if run.fabric.is_global_zero:
        run.folder.write_history(run.history)
    point = resume_point(
        state, run.phases, device_type=run.fabric.device.type, precision=run.settings.precision
    )
    if point.rng is not None:  # within a phase: this process's own RNG states
        point.rng, own = rng_for_rank(run.fabric, state)
        if not own:
            logger.warning("resuming with another number of processes: not bit-exact any more")
    if point.within is not None:
        point.within = epoch_start_for_rank(run.fabric, point.within)
    within = f", {point.within.batches} steps into the next" if point.within else ""
    logger.info("resuming from %s: %d epochs done%s", used, len(run.history), within)
    return point


def _train_phase(run: _Run, index: int, start: ResumePoint) -> bool:
    """Train one phase epoch by epoch from ``start``; return whether early stopping ended it."""
    phase, settings = run.phases[index], run.settings
    batches = run.batches_for(phase)
    if not start.mid_phase:
        _start_fresh(run, index, batches)
    setup = setup_phase(
        run.fabric, run.model, run.spec, phase, batches, settings.optim, bn=settings.bn,
        auto_speed=settings.auto_speed, saved_speed=start.speed, accumulate=settings.accumulate,
    )  # fmt: skip
    run.speed[phase.name] = setup.speed.to_dict()
    recipe = _recipe(run, batches, setup, start)
    last_phase = index == len(run.phases) - 1
    if start.optimizer is not None and start.scheduler is not None:
        setup.optimizer.load_state_dict(start.optimizer)
        setup.scheduler.load_state_dict(start.scheduler)
    elif last_phase:  # early stopping acts within the last phase only, with its full patience
        run.stopper.reset()
    run.callbacks.on_phase_start(phase, index=index, num_phases=len(run.phases))
    resumed = f" (resuming after epoch {start.epochs_done} of the phase)" if start.mid_phase else ""
    logger.info(
        "phase %d/%d: %s for %d epochs, lr %.3g, %s%s",
        index + 1, len(run.phases), phase.name, phase.epochs, phase.lr, describe(setup.speed),
        resumed,
    )  # fmt: skip
    for epoch in range(start.epochs_done + 1, phase.epochs + 1):
        first = epoch == start.epochs_done + 1
        if first and start.loader_generator is not None:
            batches.generator.set_state(start.loader_generator)
        here = _Epoch(index, epoch, batches, setup, batches.generator.get_state(), recipe)
        setup_seconds = batches.setup_seconds if first and not start.mid_phase else 0.0
        stats = _train_and_validate(
            run, here, start=start if first else None, setup_seconds=setup_seconds
        )
        run.failures.update(batches.broken_files())
        if _end_epoch(run, here, stats, last_phase):
            return True
    return False


def _recipe(run: _Run, batches: PhaseBatches, setup: PhaseSetup, start: ResumePoint) -> PhaseRecipe:
    """The phase's recipe; a resumed phase continues its weight average."""
    num_classes = class_count(run.model, run.spec, run.settings.num_classes)
    recipe = phase_recipe(
        run.settings, batches, setup.trained, num_classes=num_classes, device=run.fabric.device
    )
    if recipe.ema is not None and start.mid_phase and start.ema is not None:
        recipe.ema.load_state_dict(start.ema)
    for note in recipe.notes:  # the pipeline's Notes log them, once
        run.callbacks.on_note(note)
    return recipe


def _start_fresh(run: _Run, index: int, batches: PhaseBatches) -> None:
    """Seed a phase that starts now; a later phase starts from the best weights so far."""
    # each process draws its own augmentation and dropout; all draw the same batch order
    seed_everything(run.settings.seed + run.fabric.global_rank, workers=True, verbose=False)
    batches.generator.manual_seed(run.settings.seed)
    if index > 0 and run.best_state is not None:
        run.model.load_state_dict(run.best_state)


@dataclass
class _Epoch:
    """Where an epoch stands: its phase and number, what it trains, the generator's start state."""

    phase_index: int
    number: int  # within the phase, from 1
    batches: PhaseBatches
    setup: PhaseSetup
    generator_state: torch.Tensor
    recipe: PhaseRecipe

    def position(self, run: _Run, within: EpochProgress | None, done: int) -> dict[str, Any]:
        """The checkpoint fields that say where in the run a state belongs."""
        return {
            "speed": self.setup.speed.to_dict(),
            "speeds": dict(run.speed),
            "optimizer": self.setup.optimizer.state_dict(),
            "scheduler": self.setup.scheduler.state_dict(),
            "phase_index": self.phase_index,
            "epoch_in_phase": done,
            "within_epoch": within.state_dict() if within is not None else None,
            "phases": [p.to_dict() for p in run.phases],
            "ema": self.recipe.ema.state_dict() if self.recipe.ema is not None else None,
        }


def _train_and_validate(
    run: _Run,
    epoch: _Epoch,
    *,
    start: ResumePoint | None,
    setup_seconds: float,
) -> dict[str, Any]:
    """One epoch of training and validation; the history row without epoch and phase.

    ``setup_seconds`` (feature extraction) counts in the epoch's time and speed, so the history
    shows what the epoch really cost.
    """
    setup, within = epoch.setup, start.within if start is not None else None
    scheduler, recipe = setup.scheduler, epoch.recipe
    if within is not None and within.batches:  # the lr at the epoch's first step, as logged
        lr = step_lr(scheduler, 0, scheduler.last_epoch - within.steps)
    else:
        lr = setup.optimizer.param_groups[0]["lr"]  # the head's group comes first
    steps = len(epoch.batches.train)

    def on_step(progress: EpochProgress, loss: torch.Tensor, images_per_s: float) -> None:
        if recipe.ema is not None:
            recipe.ema.update()
        run.lr_trace.record(setup.optimizer, scheduler, epoch=len(run.history) + 1,
                            phase=run.phases[epoch.phase_index].name)  # fmt: skip
        run.callbacks.on_batch_end(BatchEnd(progress.batches, steps, float(loss), images_per_s))
        # last, so that a signal that came during this step stops after it, on every process
        value, run.stop_agreed = agree_on_step(run.fabric, float(loss), run.stop.signum)
        if blown_up(value):
            raise Diverged(_where(run, epoch, f"step {progress.batches}: training loss {value:g}"))
        _after_step(run, epoch, progress, steps)

    train = train_epoch(
        run.fabric, setup.module, epoch.batches.train, setup.optimizer, scheduler, recipe.loss_fn,
        speed=setup.speed, bn=run.settings.bn, start=within,
        rng_state=start.rng if start is not None else None, on_step=on_step,
        options=recipe.options,
    )  # fmt: skip
    val = _validation(run, epoch)
    val_seconds, train_seconds = val.pop("seconds"), train["seconds"] + setup_seconds
    return {
        "train_loss": train["loss"],
        "train_acc": train["acc"],
        **val,
        "lr": lr,
        "seconds": train_seconds + val_seconds,
        "images_per_s": train["images"] / train_seconds if train_seconds > 0 else 0.0,
    }


def _validation(run: _Run, epoch: _Epoch) -> dict[str, Any]:
    """The epoch's validation metrics (see :func:`~headstart.training.validation.validate_epoch`);
    a blown-up loss stops training, saying where."""
    try:
        return validate_epoch(
            run.fabric, epoch.setup.module, epoch.batches, epoch.setup.speed,
            ema=epoch.recipe.ema, monitor=run.settings.monitor,
        )  # fmt: skip
    except Diverged as exc:
        raise Diverged(_where(run, epoch, str(exc))) from None


def _after_step(run: _Run, epoch: _Epoch, progress: EpochProgress, steps: int) -> None:
    """Write a mid-epoch checkpoint when one is due; stop here if a signal asked to."""
    every = run.settings.checkpoint_every_steps
    due = every > 0 and progress.steps % every == 0
    if run.stop_agreed is None and not (due and progress.batches < steps):
        return
    position = epoch.position(run, summed_progress(run.fabric, progress), epoch.number - 1)
    _save_last(run, position, epoch.generator_state)
    if run.stop_agreed is not None:
        _interrupt(run, f"step {progress.batches}/{steps} of epoch {len(run.history) + 1}")


def _end_epoch(run: _Run, epoch: _Epoch, stats: dict[str, Any], last_phase: bool) -> bool:
    """Record the epoch, write ``last.pt``, call back; return whether to stop early."""
    phase = run.phases[epoch.phase_index]
    _, run.stop_agreed = agree_on_step(run.fabric, 0.0, run.stop.signum)  # one more, all together
    row = {"epoch": len(run.history) + 1, "phase": phase.name, **stats}
    stop = last_phase and run.stopper.step(row[run.settings.monitor])
    _record_epoch(run, row, epoch.recipe)
    _save_last(run, epoch.position(run, None, epoch.number), epoch.batches.generator.get_state())
    run.callbacks.on_epoch_end(row)
    if stop:
        logger.info(
            "early stopping: %s did not improve for %d epochs",
            run.settings.monitor, run.settings.patience,
        )  # fmt: skip
    elif run.stop_agreed is not None:
        _interrupt(run, f"the end of epoch {row['epoch']}")
    elif last_phase and epoch.number < phase.epochs and _past_deadline(run, row):
        return True
    return stop


def _past_deadline(run: _Run, row: Mapping[str, Any]) -> bool:
    """Whether another epoch as long as this one would end after the deadline (then say so)."""
    note = deadline_note(run.settings.deadline, row)
    if not decided_by_rank_zero(run.fabric, note is not None):  # epoch times differ per process
        return False
    run.callbacks.on_note(note or "the deadline stops training (rank 0's timing)")
    return True


def _record_epoch(run: _Run, row: dict[str, Any], recipe: PhaseRecipe) -> None:
    """Append ``row``, rewrite metrics.csv and lr.csv, and keep the weights if this epoch is the
    best (the averaged ones when they won this epoch's validation)."""
    run.history.append(row)
    logger.info(
        "epoch %d (%s): train loss %.4f acc %.3f | val loss %.4f acc %.3f f1 %.3f | %.1fs",
        *(row[k] for k in ("epoch", "phase", "train_loss", "train_acc", "val_loss", "val_acc",
                           "val_f1", "seconds")),
    )  # fmt: skip
    if run.tracker.update(row[run.settings.monitor], row["epoch"]):
        run.best_state = _weights(run, recipe if row.get("ema") else None)
        if run.fabric.is_global_zero:
            best = {"format": CHECKPOINT_FORMAT, "model": run.best_state, "epoch": row["epoch"]}
            save_checkpoint(run.folder.best_checkpoint, {**best, "metrics": row})
    if run.fabric.is_global_zero:
        run.folder.write_history(run.history)
        run.folder.write_lr_trace(run.lr_trace.rows)


def _weights(run: _Run, averaged: PhaseRecipe | None) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's weights, with the phase's averaged ones when ``averaged``."""
    if averaged is None or averaged.ema is None:
        return {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
    with averaged.ema.applied():
        return _weights(run, None)


def _save_last(run: _Run, state: dict[str, Any], generator_state: torch.Tensor) -> None:
    """Write everything an exact resume needs to ``last.pt`` (keeping the previous one).

    Args:
        state: The position fields from :meth:`_Epoch.position`.
        generator_state: The training batches' generator state at the start of the epoch that
            the resumed run trains next (or continues).
    """
    rng_ranks = all_rng_states(run.fabric)  # every process's, gathered (a collective)
    if run.fabric.is_global_zero:
        state.update(
            rng_ranks=rng_ranks,
            format=CHECKPOINT_FORMAT,
            model=run.model.state_dict(),
            best_model=run.best_state,
            epoch=len(run.history),
            early_stopping=run.stopper.state_dict(),
            best=run.tracker.state_dict(),
            history=run.history,
            config=dict(run.run_config),
            rng=capture_rng_state(),
            loader_generator=generator_state,
            lr_trace=run.lr_trace.state_dict(),
        )
        save_checkpoint(run.folder.last_checkpoint, state, keep_previous=True)
    run.fabric.barrier()


def _interrupt(run: _Run, where: str) -> None:
    """Raise :class:`TrainingInterrupted` for the checkpoint just written."""
    path = run.folder.last_checkpoint
    raise TrainingInterrupted(
        f"training stopped by {StopRequest(run.stop_agreed).name} at {where}; checkpoint saved "
        f"to {path}. "
        f"Continue with: headstart train --resume {run.folder.path}",
        path,
    )


def _where(run: _Run, epoch: _Epoch, what: str) -> str:
    phase = run.phases[epoch.phase_index].name
    return f"epoch {len(run.history) + 1} ({phase} phase, {what})"


def _after_divergence(run: _Run, exc: Diverged) -> str:
    """Stop at a blown-up loss: keep the best epoch before it (see ``divergence``)."""
    best = run.tracker.best_epoch if run.best_state is not None else None
    return divergence_note(str(exc), best_epoch=best, finished=len(run.history))


def _finish(run: _Run, stopped: bool) -> TrainResult:
    """Load the best weights into the model and package the result."""
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    best_epoch = run.tracker.best_epoch
    best_row = run.history[best_epoch - 1] if best_epoch >= 1 else run.history[-1]
    return TrainResult(
        history=run.history, best_epoch=best_row["epoch"], best_metrics=dict(best_row),
        model=run.model, phases=run.phases, stopped_early=stopped, speed=dict(run.speed),
        failures=dict(run.failures),
        ema_used=run.best_state is not None and bool(best_row.get("ema", False)),
    )  # fmt: skip
