"""``--lr auto``: a learning-rate sweep over the run's first phase picks the head's rate.

The sweep (:func:`headstart.training.lr_find.find_lr`) runs on the very batches the first phase
will train on (cached features for a head phase), leaves the model and the RNGs as it found them,
and its suggestion becomes the run's ``lr`` (origin ``auto``). The curve is drawn into the run
folder once it exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headstart.config import TrainConfig
from headstart.pipeline.notes import Notes
from headstart.pipeline.phase_data import PhaseData
from headstart.pipeline.recipe import engine_settings, plan_phases_for

if TYPE_CHECKING:
    from headstart.run_folder import RunFolder

__all__ = ["resolve_auto_lr"]

SWEEP_START_LR = 1e-3
"""Any rate will do to plan the phases the sweep runs on; the sweep sets its own."""


def resolve_auto_lr(
    config: TrainConfig, data: PhaseData, run: RunFolder, notes: Notes
) -> TrainConfig:
    """The run's settings with ``lr`` found by a sweep of its first phase.

    The run's config.yaml is written again with the rate found (origin ``auto``), so a resume
    trains with it, and the sweep's curve is drawn into the run folder.
    """
    from headstart.training.lr_find import find_lr

    planned = config.replace(lr=SWEEP_START_LR)
    first = plan_phases_for(planned, data.spec)[0]
    settings = engine_settings(planned, num_classes=len(data.splits.classes))
    found = find_lr(
        data.fabric, data.model, data.spec, first, data(first), settings.optim, bn=settings.bn
    )
    lr = float(f"{found.suggestion:.2g}")
    if data.fabric.world_size > 1:  # each process swept its own shard: rank 0's rate for all
        lr = float(data.fabric.broadcast(lr, src=0))
    stop = " (the loss blew up near the end, as it should)" if found.diverged else ""
    notes.add(
        f"learning rate {lr:g} for the {first.name} phase, from a sweep of {len(found.lrs)} steps "
        f"on your data{stop}; later phases scale it as the strategy says"
    )
    resolved = config.replace(lr=lr)
    if data.fabric.is_global_zero:
        found.plot(run.lr_find_plot)
        _, origin = run.load_config()
        run.save_config(resolved, {**origin, "lr": "auto"})
    data.config = resolved
    return resolved
