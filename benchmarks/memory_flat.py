"""Memory against dataset size (issue 14, target 4): audit + one epoch, 30,000 and 300,000 files.

Writes generated trees of tiny images (``--files`` PNGs of 12x12 pixels in 10 class folders,
written once and kept), then runs ``headstart train`` on each with a tiny random-weight model
(timm's ``test_resnet``, saved as a local weight file) for one epoch of full fine-tuning at 16 px
(lr 1e-3, float32: random weights diverge at the default lr),
and samples the process's memory from ``/proc`` every 0.1 s: peak RSS, and its anonymous part
(heap and tensors; the rest is file pages mapped from the decoded-image store and libraries,
which the kernel reclaims at will). It also reports the disk used by the cache folder against
the cache budget.

    uv run python benchmarks/memory_flat.py /tmp/hs_mem --files 30000 300000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_tree(root: Path, files: int, classes: int = 10) -> Path:
    """``files`` noisy 12x12 PNGs, one colour per class, in ``root/<class>/`` (kept if there)."""
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(classes, 3))
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        c = i % classes
        noise = rng.integers(-40, 41, size=(12, 12, 3))
        pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"c{c}" / f"{i:07d}.png", compress_level=1)
    done.write_text("")
    return root


def weights(folder: Path) -> Path:
    """Random ``test_resnet`` weights as a local file (the tests' own stand-in)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.e2e_helpers import tiny_weights

    return tiny_weights(folder)


def _status(pid: int) -> dict[str, int]:
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                found[key] = int(value.split()[0]) // 1024  # MB
    except OSError:
        pass
    return found


def measure(data: Path, weight_file: Path, cache: Path, out: Path) -> dict[str, float]:
    command = [
        sys.executable, "-m", "headstart", "train", str(data), "--model", "timm:test_resnet",
        "--weights", str(weight_file), "--strategy", "full", "--epochs", "1",
        "--image-size", "16", "--batch-size", "256", "--lr", "1e-3", "--precision", "32-true",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HEADSTART_CACHE": str(cache)}
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak: dict[str, int] = {}
    while process.poll() is None:
        for key, value in _status(process.pid).items():
            peak[key] = max(peak.get(key, 0), value)
        time.sleep(0.1)
    output = process.stdout.read().decode() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    return {**peak, "seconds": time.perf_counter() - began, "cache_mb": disk / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="where the generated trees are kept")
    parser.add_argument("--files", type=int, nargs="+", default=[30000, 300000])
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    weight_file = weights(root)
    results = {}
    for files in args.files:
        began = time.perf_counter()
        data = write_tree(root / f"tree_{files}", files)
        print(f"{files} files ready in {time.perf_counter() - began:.0f} s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results[files] = measure(data, weight_file, Path(tmp) / "cache", Path(tmp) / "run")
        print(files, {k: round(v, 1) for k, v in results[files].items()}, flush=True)
    small, large = min(results), max(results)
    for key in ("VmRSS", "RssAnon"):
        ratio = results[large][key] / results[small][key]
        print(f"peak {key}: {results[small][key]} MB ({small} files) -> {results[large][key]} MB "
              f"({large} files): {ratio:.2f}x (target <= 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
