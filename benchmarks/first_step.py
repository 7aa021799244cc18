"""Time to the first training step (issue 14, target 3): everything a run does before it learns.

Runs ``train_run`` in this process with a fresh cache folder (cold: nothing decoded, no audit
results, no speed trial) and stops the process at the end of the first training step. Prints the
seconds from the call to that step, and how long each long pass took (audit, decoding into the
cache, feature extraction), from the progress reports they make.

    uv run python benchmarks/first_step.py /tmp/hs_bench/fmnist_full --strategy full
    uv run python benchmarks/first_step.py /tmp/hs_bench/fmnist_full --strategy feature-extract
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--cache", help="cache folder (default: a fresh temporary one)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="hs_first_step_")
    os.environ["HEADSTART_CACHE"] = args.cache or str(Path(tmp) / "cache")
    began = time.perf_counter()

    from headstart.config import TrainConfig
    from headstart.pipeline import train_run
    from headstart.progress import reporting

    passes: dict[str, list[float]] = {}

    def heard(task: str, done: int, total: int) -> None:
        now = time.perf_counter() - began
        first_last = passes.setdefault(task, [now, now, 0])
        first_last[1], first_last[2] = now, total

    class FirstStep:
        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

        def on_batch_end(self, *args: Any, **kwargs: Any) -> None:
            seconds = time.perf_counter() - began
            for task, (first, last, total) in passes.items():
                print(f"  {task}: {int(total)} items, {first:.1f} s -> {last:.1f} s")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"first training step after {seconds:.1f} s (peak RSS {peak:.0f} MB)")
            sys.stdout.flush()
            os._exit(0)

    config = TrainConfig(
        data=args.data, model=args.model, strategy=args.strategy, image_size=args.image_size,
        epochs=1, out=str(Path(tmp) / "run"),
    )  # fmt: skip
    with reporting(heard):
        train_run(config, callbacks=[FirstStep()])  # type: ignore[list-item]
    print("the run ended without a training step")


if __name__ == "__main__":
    main()
