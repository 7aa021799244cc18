"""Two-phase fine-tuning on the demo data with BatchNorm statistics kept (pretrained) or adapted.

Usage: uv run python benchmarks/bn_stats.py [--epochs 8] [--image-size 96]
Prints per-epoch train/val accuracy for both settings and the held-out test accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from headstart.config import build_config
from headstart.data.demo import materialize_demo_data
from headstart.pipeline import train_run
from headstart.training.callbacks import Callback


class PrintEpochs(Callback):
    def on_epoch_end(self, row) -> None:  # noqa: ANN001
        print(
            f"  epoch {row['epoch']} {row['phase']:<5} train acc {row['train_acc']:.3f} "
            f"val acc {row['val_acc']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = materialize_demo_data(Path(tmp) / "data")
        for bn in ("pretrained", "adapt"):
            cfg, origin = build_config(
                cli_values={
                    "data": str(data), "strategy": "two-phase", "epochs": args.epochs,
                    "head_epochs": args.epochs // 2, "image_size": args.image_size, "lr": 3e-3,
                    "bn_stats": bn, "out": str(Path(tmp) / f"run-{bn}"),
                }
            )  # fmt: skip
            print(f"--bn-stats {bn}")
            result = train_run(cfg, origin, callbacks=[PrintEpochs()])
            test = result.test_metrics or {}
            print(f"  best epoch {result.best_epoch}; test acc {test.get('acc', float('nan')):.3f}")


if __name__ == "__main__":
    main()
