"""Run by test_ddp.py: a two-process run through the Python API; every process records what it
trained on (the indices of each epoch), its history and its final weights.

Usage: python ddp_script.py DATA OUT WEIGHTS RECORD_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from headstart.config import TrainConfig
from headstart.pipeline import train_run
from headstart.training import sharding


def main() -> None:
    data, out, weights, record = sys.argv[1:5]
    drawn: list[list[int]] = []
    draw = sharding.ShardSampler.__iter__

    def recording(self):  # the indices this process trains on, epoch by epoch
        indices = list(draw(self))
        drawn.append(indices)
        yield from indices

    sharding.ShardSampler.__iter__ = recording  # type: ignore[method-assign]
    config = TrainConfig(**json.loads(Path(record, "config.json").read_text()), data=data,
                         out=out, weights=weights)  # fmt: skip
    result = train_run(config)
    rank = torch.distributed.get_rank()
    torch.save(result.model.state_dict(), Path(record, f"rank{rank}.pt"))
    doc = {"drawn": drawn, "history": result.history, "world": torch.distributed.get_world_size()}
    Path(record, f"rank{rank}.json").write_text(json.dumps(doc))


if __name__ == "__main__":
    main()
