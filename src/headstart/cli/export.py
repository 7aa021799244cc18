"""``headstart export``: write a run as ONNX or TorchScript, verified against the PyTorch model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from headstart.cli.options import ModelRef, RunDevice


class ExportFormat(str, Enum):
    """Export file formats."""

    onnx = "onnx"
    torchscript = "torchscript"


def export(
    ref: ModelRef,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.")] = (
        ExportFormat.onnx
    ),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output file: a new one, or an earlier export to replace "
            "[default: RUN/model/model.onnx or .ts].",
        ),
    ] = None,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch/--static-batch", help="Let the batch size vary.")
    ] = True,
    opset: Annotated[int, typer.Option("--opset", min=9, help="ONNX opset version.")] = 17,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="Largest allowed |logit difference|.")
    ] = 1e-3,
    images: Annotated[
        int, typer.Option("--parity-images", min=1, help="Images used for the parity check.")
    ] = 16,
    device: RunDevice = "cpu",
) -> None:
    """Export a trained run and check that the file predicts exactly like the PyTorch model.

    Example: headstart export runs/run --format onnx
    """
    from headstart.cli.console import out as console
    from headstart.inference.export import export_model

    result = export_model(
        ref,
        fmt=fmt.value,
        out=out,
        opset=opset,
        dynamic_batch=dynamic_batch,
        tolerance=tolerance,
        num_images=images,
        device=device,
    )
    p = result.parity
    console.print(f"wrote {result.path} ({result.format})")
    console.print(
        f"parity on {p.num_images} {p.images} images: top-1 agreement {p.top1_agreement:.1%}, "
        f"max |logit diff| {p.max_abs_diff:.2e} (tolerance {p.tolerance:g})"
    )
