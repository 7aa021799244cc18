"""Which process of a multi-process (DDP) run this is, from the launchers' environment.

Read before any process group exists, so the command line can stay quiet in every process but
the first: ``torchrun`` sets ``RANK``, SLURM ``SLURM_PROCID`` (with ``SLURM_NTASKS``), and Fabric,
when it starts the processes of one node itself, ``LOCAL_RANK`` and ``NODE_RANK``.
"""

from __future__ import annotations

import os

__all__ = ["secondary_process"]


def secondary_process() -> bool:
    """Whether this process is one of a run's processes other than the first (global rank 0)."""
    env = os.environ
    if "RANK" in env:
        return env["RANK"] != "0"
    if "SLURM_PROCID" in env and env.get("SLURM_NTASKS", "1") != "1":
        return env["SLURM_PROCID"] != "0"
    return env.get("LOCAL_RANK", "0") != "0" or env.get("NODE_RANK", "0") != "0"
