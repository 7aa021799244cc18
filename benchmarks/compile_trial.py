"""Is torch.compile worth it here? Time it against eager for inference and training.

    uv run python benchmarks/compile_trial.py --size 96 --mode train
    uv run python benchmarks/compile_trial.py --size 224 --mode infer

Bundled EfficientNet-Lite0, batch 32, channels-last (fp32, bf16 autocast, and bf16 with the
depthwise convolutions in fp32): prints the first call (which compiles; inductor caches compiled
code on disk, so a repeat compiles faster) and the median of the next steps for eager and
compiled models, all inside ``keep_freed_memory`` as headstart trains (``--glibc-defaults``
leaves malloc alone).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import textbook  # noqa: E402

from headstart.config import BnStats  # noqa: E402
from headstart.speed import SpeedSettings, describe, keep_freed_memory  # noqa: E402
from headstart.surgery import set_trainable_stages, train_mode  # noqa: E402


def _time(settings: SpeedSettings, size: int, mode: str, steps: int) -> tuple[float, float]:
    model, spec = textbook.build_model(10)
    set_trainable_stages(model, spec, None, bn=BnStats.PRETRAINED)
    train_mode(model, bn=BnStats.PRETRAINED) if mode == "train" else model.eval()
    run = settings.prepare_model(model)
    x = settings.prepare_input(torch.randn(32, 3, size, size))

    def step() -> None:
        if mode == "infer":
            with torch.inference_mode(), settings.autocast_context():
                run(x)
            return
        with settings.autocast_context():
            out = run(x)
        out.float().mean().backward()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--glibc-defaults", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    variants = [(None, False), ("bfloat16", False), ("bfloat16", True)]
    for autocast, fp32_depthwise in variants:
        for compile in (False, True):
            s = SpeedSettings(
                channels_last=True,
                autocast=autocast,
                compile=compile,
                float32_depthwise=fp32_depthwise,
            )
            with contextlib.nullcontext() if args.glibc_defaults else keep_freed_memory():
                first, median = _time(s, args.size, args.mode, args.steps)
            print(f"| {args.mode} {args.size}px | {describe(s)} | first call {first:.1f} s | "
                  f"{32 / median:.1f} img/s |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
