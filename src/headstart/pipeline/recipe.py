"""From the user's settings to the engine's: the phase plan and the engine settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from headstart.config import AUTO, TrainConfig

if TYPE_CHECKING:
    from headstart.training.engine import EngineSettings
    from headstart.training.strategies import Phase
    from headstart.zoo.spec import BackboneSpec

__all__ = [
    "describe_processes",
    "describe_recipe",
    "effective_batch_size",
    "engine_settings",
    "plan_phases_for",
    "process_batch_size",
]


def plan_phases_for(config: TrainConfig, spec: BackboneSpec) -> list[Phase]:
    """The phases of ``config``; under ``lr: auto`` (not swept yet) rates are relative to 1."""
    from headstart.training.strategies import plan_phases

    lr = 1.0 if config.lr == AUTO else float(config.lr)
    return plan_phases(
        config.strategy, spec, epochs=config.epochs, head_epochs=config.head_epochs,
        unfreeze_stages=config.unfreeze_stages, lr=lr,
        finetune_lr_factor=config.finetune_lr_factor,
    )  # fmt: skip


def engine_settings(
    config: TrainConfig, *, num_classes: int, deadline: float = 0.0
) -> EngineSettings:
    """The engine's own settings, from the user's (``lr`` must be a number by now).

    Args:
        deadline: ``time.monotonic()`` by which training must end (0: none), for ``--budget``.
    """
    from headstart.training.engine import EngineSettings
    from headstart.training.phase import OptimSettings

    optim = OptimSettings(
        optimizer=config.optimizer, momentum=config.momentum, weight_decay=config.weight_decay,
        backbone_lr_factor=config.backbone_lr_factor, layer_decay=config.layer_decay,
        warmup_epochs=config.warmup_epochs, label_smoothing=config.label_smoothing,
        schedule=config.schedule,
    )  # fmt: skip
    return EngineSettings(
        seed=config.seed, optim=optim, monitor=config.monitor, patience=config.patience,
        bn=config.bn_stats, auto_speed=config.precision == "auto", precision=config.precision,
        checkpoint_every_steps=config.checkpoint_every_steps, mixup=config.mixup,
        cutmix=config.cutmix, ema=config.ema, ema_decay=config.ema_decay,
        accumulate=config.accumulate, clip_grad=config.clip_grad,
        class_weights=config.class_weights, num_classes=num_classes, deadline=deadline,
    )  # fmt: skip


def process_batch_size(batch_size: int, processes: int) -> int:
    """Each process's share of ``--batch-size``, which is the batch of all processes together
    (so ``--devices 2`` trains as one process would, with the same rates, faster)."""
    return max(1, batch_size // processes)


def effective_batch_size(config: TrainConfig, processes: int) -> int:
    """Images per optimizer step, all processes together (after gradient accumulation)."""
    return process_batch_size(config.batch_size, processes) * processes * config.accumulate


def describe_processes(config: TrainConfig, processes: int) -> str:
    """One line for the user: how several processes share the batches (DDP)."""
    per = process_batch_size(config.batch_size, processes)
    rounded = "" if per * processes == config.batch_size else (
        f" (--batch-size {config.batch_size} rounded to a multiple of {processes})"
    )  # fmt: skip
    steps = f" x {config.accumulate} accumulated" if config.accumulate > 1 else ""
    return (
        f"{processes} processes (DDP): each trains a shard of every epoch, {per} images per "
        f"batch; effective batch {processes} x {per}{steps} = "
        f"{effective_batch_size(config, processes)}{rounded}, the rates as for one process; "
        "validation covers the whole validation set"
    )


def describe_recipe(config: TrainConfig, spec: BackboneSpec) -> str:
    """One line for the user: the recipe this run trains with (the report's settings say more)."""
    from headstart.config import Augment, BnStats, Strategy
    from headstart.training.strategies import describe_split

    phases = ", then ".join(
        f"{p.name} {p.epochs} epoch{'s' if p.epochs != 1 else ''} at lr {p.lr:.3g}"
        for p in plan_phases_for(config, spec)
    )
    body = f"body x{config.backbone_lr_factor:g}, layer decay {config.layer_decay:g}"
    augment = Augment(config.augment).value
    if augment != "none":
        augment += " with flips" if config.hflip is not False else " without flips"
    extras = [
        f"{name} {value:g}" for name, value in (
            ("mixup", config.mixup), ("cutmix", config.cutmix),
            ("random erasing", config.random_erasing), ("clip-grad", config.clip_grad),
        ) if value
    ]  # fmt: skip
    extras += ["ema"] if config.ema else []
    extras += [f"accumulate {config.accumulate}"] if config.accumulate > 1 else []
    size = config.image_size or spec.preprocessing.input_size
    text = (
        f"recipe: {config.strategy.value}, {phases} ({body}); {size} px, "
        f"batch {config.batch_size}, {config.optimizer.value}, {config.schedule.value} schedule, "
        f"augment {augment}, BatchNorm statistics {BnStats(config.bn_stats).value}"
    )
    text += "".join(f", {e}" for e in extras)
    split = describe_split(config.epochs, config.head_epochs)
    if config.strategy is Strategy.TWO_PHASE and split:
        text += f" ({split})"
    if augment != "none" and config.hflip is True:
        text += " (--no-hflip if a mirror image is another class: text, digits)"
    return text
