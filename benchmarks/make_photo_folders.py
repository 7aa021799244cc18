"""A natural-colour-photo stand-in for CIFAR-10 (no network here): crops of ten bundled photos.

    uv run python benchmarks/make_photo_folders.py /tmp/photos [--train 60] [--val 30] [--test 30]

The ten colour photographs that ship inside scikit-image and scikit-learn (astronaut, cat, coffee,
rocket, Hubble deep field, a tissue stain, a retina, a motorcycle, a Chinese temple, a flower) are
the ten classes. Each image of a class is a random square crop (15-45% of the photo's short side,
at a random place), resized to 64 px, with a random brightness and contrast change. Training and
validation crops come from the left 65% of each photo, test crops from the right 35%, so the test
split shows parts of the scenes that training never saw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance


def photos() -> dict[str, np.ndarray]:
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "astronaut": sk.astronaut(), "cat": sk.chelsea(), "coffee": sk.coffee(),
        "rocket": sk.rocket(), "hubble": sk.hubble_deep_field(),
        "tissue": sk.immunohistochemistry(), "retina": sk.retina(),
        "motorcycle": sk.stereo_motorcycle()[0], "temple": china, "flower": flower,
    }  # fmt: skip


def crop(photo: np.ndarray, rng: np.random.Generator, part: tuple[float, float]) -> Image.Image:
    height, width = photo.shape[:2]
    left, right = int(part[0] * width), int(part[1] * width)
    side = int(rng.uniform(0.15, 0.45) * min(height, right - left))
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(left, right - side + 1))
    image = Image.fromarray(photo[y : y + side, x : x + side]).resize((64, 64), Image.BILINEAR)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--val", type=int, default=30)
    parser.add_argument("--test", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    counts = {"train": (args.train, (0.0, 0.65)), "val": (args.val, (0.0, 0.65)),
              "test": (args.test, (0.65, 1.0))}  # fmt: skip
    for name, photo in photos().items():
        for split, (n, part) in counts.items():
            folder = args.out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                crop(photo, rng, part).save(folder / f"{i:03d}.png")
    total = 10 * (args.train + args.val + args.test)
    print(f"wrote {total} crops of 10 photos to {args.out}")


if __name__ == "__main__":
    main()
