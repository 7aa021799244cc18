"""Whole-command speed (issue 14, targets 1 and 2): what a user waits for, start to finish.

Times, as separate processes on the same machine and data (feature extraction, 96 px, 5 epochs):
the textbook loop as a whole process (imports, model, epochs; ``benchmarks/textbook.py``);
``headstart train`` with a cold cache (a fresh ``HEADSTART_CACHE``); ``headstart train`` again with
another learning rate (warm cache); and ``python -c "import torch, torchvision"``. Each is run
``--repeats`` times and the fastest kept.

    uv run python benchmarks/whole_command.py /tmp/hs_bench/fmnist_1k [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of ``command`` and its output (it must succeed)."""
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def accuracy(output: str) -> str:
    found = re.findall(r"(?:test: acc|val acc|'val_acc': )\s*([0-9.]+)", output)
    return found[-1] if found else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="class folders (train/ val/), e.g. 1,000 / 300 Fashion-MNIST")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    python, data = sys.executable, str(Path(args.data).resolve())
    textbook = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from pathlib import Path; "
                f"from textbook import feature_extract; "
                f"print(feature_extract(Path({data!r}), 96, 5))")  # fmt: skip
    train = [python, "-m", "headstart", "train", data, "--strategy", "feature-extract",
             "--epochs", "5", "--image-size", "96"]  # fmt: skip
    best: dict[str, tuple[float, str]] = {}

    def keep(name: str, seconds: float, output: str) -> None:
        if name not in best or seconds < best[name][0]:
            best[name] = (seconds, output)

    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "HEADSTART_CACHE": str(Path(tmp) / "cache")}
            keep("import torch, torchvision", *timed([python, "-c", "import torch, torchvision"],
                                                     env))  # fmt: skip
            keep("textbook whole process", *timed([python, "-c", textbook], env))
            keep("headstart train, cold cache", *timed([*train, "--out", f"{tmp}/a"], env))
            keep("headstart train, warm cache, --lr 3e-3",
                 *timed([*train, "--lr", "3e-3", "--out", f"{tmp}/b"], env))  # fmt: skip
    for name, (seconds, output) in best.items():
        print(f"{name}: {seconds:.1f} s (accuracy {accuracy(output)})")
    book, cold = best["textbook whole process"][0], best["headstart train, cold cache"][0]
    warm = best["headstart train, warm cache, --lr 3e-3"][0]
    imports = best["import torch, torchvision"][0]
    print(f"target 1: textbook / headstart cold = {book / cold:.2f}x (target >= 3)")
    print(f"target 2: headstart warm / import torch, torchvision = {warm / imports:.2f}x "
          "(target <= 1.5)")  # fmt: skip


if __name__ == "__main__":
    main()
