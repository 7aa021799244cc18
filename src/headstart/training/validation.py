"""An epoch's validation: the live weights and, with EMA on, the averaged ones; the whole set.

With several processes each validates its shard (:mod:`headstart.training.sharding`) and the
outputs are gathered in the validation set's order, so every process computes the metrics of a
single-process evaluation of the same weights, and takes the same best-epoch and early-stopping
decisions.
"""

from __future__ import annotations

from typing import Any

from lightning_fabric import Fabric
from torch import nn

from headstart.evaluation.metrics import macro_f1
from headstart.speed.settings import SpeedSettings
from headstart.training.batches import PhaseBatches
from headstart.training.divergence import Diverged, blown_up
from headstart.training.ema import EmaWeights, ema_wins
from headstart.training.loop import scores, validate
from headstart.training.sharding import gather_in_order

__all__ = ["validate_epoch"]


def validate_epoch(
    fabric: Fabric,
    module: nn.Module,
    batches: PhaseBatches,
    speed: SpeedSettings,
    *,
    ema: EmaWeights | None,
    monitor: str,
) -> dict[str, Any]:
    """``val_loss``, ``val_acc``, ``val_f1`` and ``seconds`` of the live weights or, with ``ema``,
    of whichever of the live and averaged weights is better by ``monitor``, with ``ema`` saying
    which (the seconds count both passes).

    Raises:
        Diverged: A validation loss is not finite (or blew up).
    """
    live = _metrics(fabric, module, batches, speed, "validation loss")
    if ema is None:
        return live
    with ema.applied():
        averaged = _metrics(fabric, module, batches, speed, "validation loss of the EMA weights")
    seconds = live["seconds"] + averaged["seconds"]
    chosen = averaged if ema_wins(live, averaged, monitor) else live
    return {**chosen, "seconds": seconds, "ema": chosen is averaged}


def _metrics(
    fabric: Fabric, module: nn.Module, batches: PhaseBatches, speed: SpeedSettings, what: str
) -> dict[str, Any]:
    val = validate(module, batches.val, speed=speed)
    if fabric.world_size > 1:  # every process scored a shard: score the whole set
        n = batches.val_size
        logits = gather_in_order(fabric, val["logits"], n)
        targets = gather_in_order(fabric, val["targets"], n)
        val = {**scores(logits, targets), "seconds": val["seconds"]}
    if blown_up(val["loss"]):
        raise Diverged(f"{what} {val['loss']:g}")
    num_classes = val["logits"].shape[1] if val["logits"].numel() else 1
    return {
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "val_f1": macro_f1(val["logits"].argmax(dim=1), val["targets"], num_classes),
        "seconds": val["seconds"],
    }
