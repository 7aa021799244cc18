"""`predict` on image files against the bare model forward on tensors already in memory.

Usage: uv run python benchmarks/predict_speed.py [--images 160] [--repeats 3]
Bundled EfficientNet-Lite0 at 224 px on the demo's Fashion-MNIST PNGs; both sides channels-last,
fp32, batch 32; prediction includes reading and decoding the files.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from headstart.data.demo import materialize_demo_data
from headstart.data.images import image_to_tensor
from headstart.inference.load import load_model
from headstart.inference.predict import predict_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(materialize_demo_data(Path(tmp) / "d").rglob("*.png"))[: args.images]
        loaded = load_model("bundled:efficientnet_lite0")
        x = torch.stack([image_to_tensor(f, loaded.preprocessing) for f in files])
        x = x.contiguous(memory_format=torch.channels_last)
        model = loaded.model.eval().to(memory_format=torch.channels_last)

        def bare() -> float:
            with torch.inference_mode():
                start = time.perf_counter()
                for i in range(0, len(x), 32):
                    model(x[i : i + 32])
                return len(x) / (time.perf_counter() - start)

        def predict() -> float:
            start = time.perf_counter()
            predict_files(loaded, files, batch_size=32)
            return len(files) / (time.perf_counter() - start)

        bare(), predict()  # warm up
        for _ in range(args.repeats):
            b, p = bare(), predict()
            print(f"bare forward {b:.1f} img/s, predict {p:.1f} img/s, ratio {p / b:.2f}")


if __name__ == "__main__":
    main()
