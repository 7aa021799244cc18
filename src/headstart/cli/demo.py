"""``headstart demo``: the whole job on a small real dataset that ships with headstart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Run folder.")] = "runs/demo",
    epochs: Annotated[
        int, typer.Option(min=1, help="Epochs in all: 2 train the head, the rest everything.")
    ] = 8,
    image_size: Annotated[int, typer.Option(min=32, help="Input size in pixels.")] = 64,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where to write the demo images [default: headstart's cache]."),
    ] = None,
) -> None:
    """Fine-tune the bundled EfficientNet-Lite0 on a Fashion-MNIST subset, offline, in minutes.

    Example: headstart demo
    """
    from headstart.cli.console import out as console
    from headstart.cli.train import print_summary, run_with_progress
    from headstart.config import build_config
    from headstart.data.demo import materialize_demo_data
    from headstart.files import cache_dir
    from headstart.pipeline import train_run

    data = materialize_demo_data(data_dir or cache_dir() / "demo" / "fashion-mnist")
    console.print(f"demo data: {data} (Fashion-MNIST subset, MIT licence)")
    values = {
        "data": str(data),
        "model": "bundled:efficientnet_lite0",
        "strategy": "two-phase",
        "epochs": epochs,
        "head_epochs": 2,  # fewer with --epochs 1 or 2: training.strategies.split_epochs
        "image_size": image_size,
        "batch_size": 32,
        "out": out,
    }
    cfg, origin = build_config(cli_values=values)
    origin["out"] = "default" if out == "runs/demo" else "cli"
    from headstart.started import AT

    result = run_with_progress(
        cfg, lambda callbacks: train_run(cfg, origin, callbacks=callbacks, started=AT)
    )
    print_summary(result)
    console.print(
        f"next: headstart evaluate {result.run_dir} {data}/test   |   "
        f"headstart predict {result.run_dir} {data}/test"
    )
