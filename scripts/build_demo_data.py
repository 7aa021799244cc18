"""Build src/headstart/data/demo_data/fashion_mnist_subset.npz from the Fashion-MNIST idx files.

Usage: uv run python scripts/build_demo_data.py [--source /usr/share/datasets/fashion-mnist]

Takes a class-balanced, seeded subset: TRAIN_PER_CLASS images per class from the official training
file and VAL_PER_CLASS per class from the official test file. Fashion-MNIST is (c) 2017 Zalando SE,
MIT licence (Debian package dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import gzip
import logging
from pathlib import Path

import numpy as np

from headstart.data.demo import DEMO_CLASSES

log = logging.getLogger("build_demo_data")

CLASSES = DEMO_CLASSES  # one list of names, shared with the package
TRAIN_PER_CLASS = 60
VAL_PER_CLASS = 20
SEED = 0
OUT = Path(__file__).resolve().parents[1] / "src/headstart/data/demo_data/fashion_mnist_subset.npz"


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped idx file (magic 0x0000080N: unsigned bytes, N dimensions)."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def balanced_subset(
    images: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``per_class`` random images of each class, ordered by class then index."""
    picks = [
        np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False))
        for c in range(len(CLASSES))
    ]
    index = np.concatenate(picks)
    return images[index], labels[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(SEED)
    arrays = {}
    for split, prefix, per_class in (
        ("train", "train", TRAIN_PER_CLASS),
        ("val", "t10k", VAL_PER_CLASS),
    ):
        images = read_idx(args.source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(args.source / f"{prefix}-labels-idx1-ubyte.gz")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = balanced_subset(
            images, labels, per_class, rng
        )
    np.savez_compressed(args.out, classes=np.array(CLASSES), **arrays)
    log.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)


if __name__ == "__main__":
    main()
