"""Time building the decoded-image cache: ``build_decoded_cache`` on the first N training images.

    uv run python benchmarks/cache_build.py /tmp/hs_bench/fmnist_10k --images 5000 --size 96
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from headstart.data.folders import load_splits
from headstart.data.image_cache import build_decoded_cache
from headstart.preprocessing import PreprocessSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    splits = load_splits(args.data, val_fraction=0.2, test_fraction=0.0, seed=0)
    samples = list(splits.train)[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        build_decoded_cache(samples, PreprocessSpec(input_size=args.size), root=Path(tmp))
        print(f"{len(samples)} images at {args.size} px in {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
