"""`headstart train` (the real CLI and engine) against the textbook loop: training images/s.

    uv run python benchmarks/make_fmnist_folders.py /tmp/hs_bench/fmnist_1k --train 1000 --val 300
    uv run python benchmarks/train_speed.py /tmp/hs_bench/fmnist_1k --size 96 --epochs 2

For each strategy (``full``: ``--epochs`` epochs; ``two-phase``: one head epoch, then the rest
full) it runs ``headstart train`` in a subprocess with a fresh cache folder (so the first run pays
for the decoded-image cache and the speed trial) and reads the training images/s of every epoch
from the run's metrics.csv; then it runs the textbook recipe over the same epochs
(``textbook.train_epochs``). Training images/s = training images / seconds of the training passes
(validation excluded on both sides); the wall time of the whole command (audit, caches, trial,
test evaluation and report included) is printed beside the textbook's wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import textbook  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def headstart_train(data: Path, size: int, strategy: str, epochs: int, precision: str) -> dict:
    """Run ``headstart train`` once with a fresh cache; training images/s from metrics.csv."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [
            str(ROOT / ".venv" / "bin" / "headstart"), "train", str(data),
            "--strategy", strategy, "--epochs", str(epochs), "--head-epochs", "1",
            "--image-size", str(size), "--precision", precision, "--out", str(out),
        ]  # fmt: skip
        env = {**os.environ, "HEADSTART_CACHE": str(Path(tmp) / "cache")}
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"headstart train failed:\n{proc.stdout}\n{proc.stderr}")
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        n = len(json.loads((out / "splits.json").read_text())["train"])
        speed = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                 if "speed:" in line]  # fmt: skip
    per_epoch = [float(r["images_per_s"]) for r in rows]
    train_seconds = sum(n / ips for ips in per_epoch)
    return {
        "per_epoch": per_epoch,
        "phases": [r["phase"] for r in rows],
        "train_images_per_s": n * len(rows) / train_seconds,
        "wall": wall,
        "val_acc": float(rows[-1]["val_acc"]),
        "speed": speed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategies", default="full,two-phase")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="pairs per strategy (median)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    for strategy in args.strategies.split(","):
        ratios = [_pair(args, strategy) for _ in range(args.repeats)]
        if args.repeats > 1:
            print(f"  {strategy}: median ratio {statistics.median(ratios):.2f}x "
                  f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)  # fmt: skip
    print(f"load average at the end: {os.getloadavg()}")


def _pair(args: argparse.Namespace, strategy: str) -> float:
    """One headstart run and one textbook run; print both and return the ratio."""
    ours = headstart_train(args.data, args.size, strategy, args.epochs, args.precision)
    head = 1 if strategy == "two-phase" else 0
    theirs = textbook.train_epochs(args.data, args.size, head, args.epochs - head)
    ratio = ours["train_images_per_s"] / theirs["train_images_per_s"]
    print(
        f"| {strategy}, {args.epochs} epochs, {args.size}px, --precision {args.precision} "
        f"| {ours['train_images_per_s']:.1f} img/s | {theirs['train_images_per_s']:.1f} img/s "
        f"| {ratio:.2f}x | >=2x |",
        flush=True,
    )
    tb_epochs = [f"{r['train_images_per_s']:.1f}" for r in theirs["rows"]]
    print(
        f"  per epoch: headstart {list(zip(ours['phases'], ours['per_epoch'], strict=True))}, "
        f"textbook {tb_epochs}\n"
        f"  whole command {ours['wall']:.1f}s (audit, caches, speed trial, test evaluation, "
        f"report) vs textbook {theirs['seconds']:.1f}s; val acc {ours['val_acc']:.3f} vs "
        f"{theirs['val_acc']:.3f}\n  {' | '.join(ours['speed'])}",
        flush=True,
    )
    return ratio


if __name__ == "__main__":
    main()
