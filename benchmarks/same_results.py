"""Do two versions of headstart train to the same numbers? A check for refactors.

Usage: uv run python benchmarks/same_results.py --base 12c3e23 [--epochs 3] [--head-epochs 1]
    [--image-size 64] [--data DIR]

Checks out ``--base`` into a temporary git worktree, then runs ``headstart train`` of that version
and of this working tree, one after the other, on ``--data`` (default: the bundled demo data, a
Fashion-MNIST subset) for each strategy and cache setting below, with the same seed. Both versions
share one tuning cache (``tuning.json``, copied from the base version's run, old BatchNorm words
mapped to new), so the speed trial cannot pick different precisions. Prints, per configuration,
whether the epoch rows (losses, accuracies, F1, learning rate; not the timings) and the test
accuracy are equal, and the two wall times. Values count as equal within 1e-5 (relative): summing
a loss on the device or on the host, per batch or over the epoch, changes the last digits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "two-phase": ["--strategy", "two-phase"],
    "two-phase --no-cache": ["--strategy", "two-phase", "--no-cache"],
    "feature-extract": ["--strategy", "feature-extract"],
    "feature-extract --no-cache": ["--strategy", "feature-extract", "--no-cache"],
    "partial 2 (fp32)": ["--strategy", "partial", "--unfreeze-stages", "2", "--precision",
                         "32-true"],
    "full (fp32, val_loss)": ["--strategy", "full", "--precision", "32-true", "--monitor",
                              "val_loss"],
}  # fmt: skip
TIMING = ("seconds", "images_per_s")
TOLERANCE = 1e-5
_BN_WORDS = {"bn:eval": "bn:pretrained", "bn:frozen": "bn:adapt"}  # renamed in issue 10


def train(src: Path, data: Path, out: Path, cache: Path, args: list[str]) -> float:
    """Run ``headstart train`` from the sources in ``src``; return the wall time."""
    env = {**os.environ, "PYTHONPATH": str(src), "HEADSTART_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "headstart", "train", str(data), "--out", str(out), *args]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def outcome(run: Path) -> tuple[list[dict[str, str]], float | None]:
    """Epoch rows without timings, and the test accuracy of a run folder."""
    with (run / "metrics.csv").open() as handle:
        rows = [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(handle)]
    meta = json.loads((run / "model" / "headstart.json").read_text())
    test = (meta.get("metrics") or {}).get("test") or {}
    return rows, test.get("acc")


def largest_difference(a: list[dict[str, str]], b: list[dict[str, str]]) -> float:
    """The largest relative difference between two runs' epoch rows (inf if they differ in kind)."""
    if len(a) != len(b) or any(x.keys() != y.keys() for x, y in zip(a, b)):
        return float("inf")
    worst = 0.0
    for x, y in zip(a, b):
        for key in x:
            try:
                u, v = float(x[key]), float(y[key])
            except ValueError:
                if x[key] != y[key]:
                    return float("inf")
                continue
            worst = max(worst, abs(u - v) / max(1.0, abs(u)))
    return worst


def share_tuning(base_cache: Path, cache: Path) -> None:
    """Copy the base version's speed-trial choices, with today's BatchNorm words."""
    source = base_cache / "tuning.json"
    if source.is_file():
        text = source.read_text()
        for old, new in _BN_WORDS.items():
            text = text.replace(old, new)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "tuning.json").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--data", type=Path, help="an image folder (default: the demo data)")
    args = parser.parse_args()
    common = ["--image-size", str(args.image_size), "--epochs", str(args.epochs),
              "--head-epochs", str(args.head_epochs), "--batch-size", "32", "--lr", "3e-3",
              "--seed", "0"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base = tmp_path / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)  # fmt: skip
        try:
            sys.path.insert(0, str(ROOT / "src"))
            from headstart.data.demo import materialize_demo_data

            data = args.data or materialize_demo_data(tmp_path / "demo")
            caches = {"base": tmp_path / "cache-base", "now": tmp_path / "cache-now"}
            for name, extra in CONFIGS.items():
                slug = name.replace(" ", "_").replace("(", "").replace(")", "")
                runs = {v: tmp_path / v / slug for v in caches}
                t_base = train(base / "src", data, runs["base"], caches["base"], common + extra)
                share_tuning(caches["base"], caches["now"])
                t_now = train(ROOT / "src", data, runs["now"], caches["now"], common + extra)
                (rows_b, acc_b), (rows_n, acc_n) = outcome(runs["base"]), outcome(runs["now"])
                diff = largest_difference(rows_b, rows_n)
                same = "same" if diff <= TOLERANCE and acc_b == acc_n else "DIFFERENT"
                print(f"| {name} | {same} (largest difference {diff:.1e}) | test acc {acc_b} -> "
                      f"{acc_n} | {t_base:.1f} s -> {t_now:.1f} s |", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)  # fmt: skip


if __name__ == "__main__":
    main()
