"""Write a balanced Fashion-MNIST subset as PNG class folders (``train/<c>/``, ``val/<c>/``).

Reads Debian's idx files (``apt-get install -y dataset-fashion-mnist``), so it runs offline.

    uv run python benchmarks/make_fmnist_folders.py /tmp/fmnist --train 1000 --val 300
    uv run python benchmarks/make_fmnist_folders.py /tmp/fmnist_full --full

``--full`` writes all of it: 54,000 train and 6,000 validation images (600 per class, seeded) from
the official training file, and the official 10,000 test images as ``test/<c>/``.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "tshirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
)  # fmt: skip


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _balanced(labels: np.ndarray, per_class: int, skip: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        picked.extend(idx[skip : skip + per_class])
    return np.array(picked)


def write_folders(out: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """Write ``n_train`` training and ``n_val`` validation images (balanced) under ``out``."""
    if not (SOURCE / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"{SOURCE} is missing; run: apt-get install -y dataset-fashion-mnist")
    images = _read_idx(SOURCE / "train-images-idx3-ubyte.gz")
    labels = _read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
    k = len(CLASSES)
    train = _balanced(labels, n_train // k, 0, seed)
    val = _balanced(labels, n_val // k, n_train // k, seed)
    for split, idx in (("train", train), ("val", val)):
        for i in idx:
            folder = out / split / CLASSES[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    return out


def write_full(out: Path, seed: int = 0) -> Path:
    """All 70,000 images: train 54,000 / val 6,000 (balanced, seeded) / the official test 10,000."""
    if not (SOURCE / "t10k-images-idx3-ubyte.gz").is_file():
        sys.exit(f"{SOURCE} is missing; run: apt-get install -y dataset-fashion-mnist")
    images = _read_idx(SOURCE / "train-images-idx3-ubyte.gz")
    labels = _read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
    val = set(_balanced(labels, 600, 0, seed).tolist())
    for i, (image, label) in enumerate(zip(images, labels)):
        split = "val" if i in val else "train"
        folder = out / split / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    test_images = _read_idx(SOURCE / "t10k-images-idx3-ubyte.gz")
    test_labels = _read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")
    for i, (image, label) in enumerate(zip(test_images, test_labels)):
        folder = out / "test" / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"t{i:05d}.png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="all 70,000 images (see above)")
    args = parser.parse_args()
    if args.full:
        write_full(args.out, args.seed)
        print(f"wrote 54000 train / 6000 val / 10000 test images to {args.out}")
        return
    write_folders(args.out, args.train, args.val, args.seed)
    print(f"wrote {args.train} train / {args.val} val images to {args.out}")


if __name__ == "__main__":
    main()
