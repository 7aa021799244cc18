"""Option types shared by several commands."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

ModelRef = Annotated[
    str,
    typer.Argument(
        help="A run folder, a model folder, or a zoo model name (e.g. bundled:efficientnet_lite0).",
        show_default=False,
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ZooModel = Annotated[str, typer.Option("--model", "-m", help="Zoo model name.")]
WeightsFile = Annotated[
    Path | None,
    typer.Option(help="Local weight file (.safetensors, .pth, .pth.tar, .ckpt) for the model."),
]
UnfreezeStages = Annotated[
    int, typer.Option(help="With --strategy partial: how many last stages train.")
]
RunDevice = Annotated[
    str,
    typer.Option(
        "--device",
        help="Where the model runs: auto (a CUDA GPU, else Apple MPS, else the CPU), cpu, cuda, "
        "cuda:1 or mps. ONNX exports run on the CPU.",
    ),
]


def choices(values: Iterable[str]) -> str:
    """A metavar that lists ``values`` in --help; config checks them, for YAML and Python too."""
    return "<" + "|".join(values) + ">"
