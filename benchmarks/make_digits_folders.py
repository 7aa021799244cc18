"""Write scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) as PNG class folders.

Tiny low-resolution grayscale images, a second kind of data beside Fashion-MNIST; offline.

    uv run python benchmarks/make_digits_folders.py /tmp/digits [--size 32] [--test 0.2]

Writes ``train/<digit>/`` and ``test/<digit>/`` (a stratified, seeded test split); headstart
carves its validation split off ``train/``. Images are upscaled with nearest-neighbour pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    from sklearn.datasets import load_digits

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--size", type=int, default=32, help="side of the written images")
    parser.add_argument("--test", type=float, default=0.2, help="fraction of each class to test")
    args = parser.parse_args()
    digits = load_digits()
    rng = np.random.default_rng(0)
    for label in range(10):
        index = rng.permutation(np.flatnonzero(digits.target == label))
        n_test = round(len(index) * args.test)
        for split, part in (("test", index[:n_test]), ("train", index[n_test:])):
            folder = args.dest / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)
                image = Image.fromarray(pixels).resize((args.size, args.size), Image.NEAREST)
                image.save(folder / f"{i:04d}.png")
    print(f"wrote {len(digits.target)} images to {args.dest}")


if __name__ == "__main__":
    main()
