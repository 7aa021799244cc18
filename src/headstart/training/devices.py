"""The devices training runs on: a Lightning Fabric for the accelerator, precision and processes.

One process on one device is the default. With more (``--devices`` x ``--num-nodes``), Fabric runs
DDP: on one node it starts the other processes itself (it runs the same command again with
``LOCAL_RANK`` set); under ``torchrun``, SLURM or ``fabric run`` it reads their environment and
starts nothing. :func:`create_fabric` returns once every process has joined.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy

from headstart.errors import ConfigError

__all__ = ["COLLECTIVE_TIMEOUT", "create_fabric"]

COLLECTIVE_TIMEOUT = timedelta(hours=6)
"""How long a process waits in a collective: rank 0 alone fills the caches (decoding a large
data set or extracting its features) while the others wait, longer than the 30-minute default."""


def create_fabric(
    accelerator: str,
    precision: str,
    *,
    devices: int | str = 1,
    num_nodes: int = 1,
    distributed: str = "auto",
) -> Fabric:
    """A launched Fabric; ``precision="auto"`` makes a float32 one (the phases then autocast as
    their speed trial decides).

    Args:
        devices: Processes per node (one device each), or ``auto`` (every GPU; one on a CPU).
        num_nodes: Machines taking part.
        distributed: ``auto`` (DDP when more than one process takes part) or ``ddp``.
    """
    fabric_precision: Any = "32-true" if precision == "auto" else precision
    several = _device_count(accelerator, devices) * num_nodes > 1
    strategy: Any = "auto"
    if distributed == "ddp" or several:
        strategy = DDPStrategy(timeout=COLLECTIVE_TIMEOUT)
    try:
        fabric = Fabric(
            accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
            precision=fabric_precision,
        )  # fmt: skip
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"cannot use accelerator {accelerator!r} with precision {precision!r} on {devices} "
            f"device(s) x {num_nodes} node(s): {exc}; try --accelerator cpu --precision 32-true "
            "--devices 1."
        ) from None
    if fabric.world_size > 1 or num_nodes > 1 or strategy != "auto":
        try:
            fabric.launch()
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot start {fabric.world_size} training processes: {exc}; under torchrun or "
                "SLURM, --devices must be the processes per node and --num-nodes the nodes."
            ) from None
    return fabric


def _device_count(accelerator: str, devices: int | str) -> int:
    """The processes ``devices`` means on this machine (``auto``: every CUDA GPU, else one)."""
    if devices != "auto":
        return int(devices)
    import torch

    cuda = accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available()
    return torch.cuda.device_count() if cuda else 1
