"""``headstart predict``: top-k labels for image files or folders."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from headstart.cli.options import BatchSize, Json, ModelRef, RunDevice
from headstart.defaults import INFERENCE_BATCH_SIZE, TOPK

if TYPE_CHECKING:
    from headstart.inference.predict import Prediction


class TtaMode(str, Enum):
    """``--tta``: the views whose probabilities are averaged (``inference.predict.TTA_MODES``)."""

    NONE = "none"
    FLIP = "flip"
    CROPS = "crops"


Tta = Annotated[
    TtaMode,
    typer.Option(
        "--tta",
        help="Test-time augmentation: average the probabilities of each image and its mirror "
        "(flip, 2x the time) or of five crops, centre and corners (crops, 5x).",
    ),
]


def predict(
    ref: ModelRef,
    paths: Annotated[
        list[Path], typer.Argument(help="Image files or folders.", show_default=False)
    ],
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="Labels per image.")] = TOPK,
    batch_size: BatchSize = INFERENCE_BATCH_SIZE,
    tta: Tta = TtaMode.NONE,
    device: RunDevice = "auto",
    as_json: Json = False,
) -> None:
    """Predict the labels of images with a trained run or a pretrained zoo model.

    Example: headstart predict runs/run new_photos/ --topk 2 --tta flip
    """
    from headstart.data.folders import list_images
    from headstart.inference.load import load_model
    from headstart.inference.predict import predict_files
    from headstart.speed import keep_freed_memory

    files = list_images(paths)
    loaded = load_model(ref, device=device)
    from headstart.cli.console import pass_bars

    with keep_freed_memory(), pass_bars():  # no page faults for every batch's activations
        predictions = predict_files(loaded, files, topk=topk, batch_size=batch_size, tta=tta.value)
    if all(p.error is not None for p in predictions):
        from headstart.errors import DataError

        raise DataError(
            f"none of the {len(files)} images could be read (first: {predictions[0].error})."
        )
    if as_json:
        import json

        typer.echo(json.dumps([p.to_dict() for p in predictions], indent=2))
        return
    _print_table(predictions)


def _print_table(predictions: list[Prediction]) -> None:
    from rich.table import Table

    from headstart.cli.console import err, out

    table = Table("image", "label", "probability", "others")
    for p in predictions:
        if p.error is not None:
            continue
        others = ", ".join(f"{lab} {prob:.3f}" for lab, prob in zip(p.labels[1:], p.probs[1:]))
        table.add_row(p.path, p.labels[0], f"{p.probs[0]:.3f}", others)
    out.print(table)
    for p in predictions:
        if p.error is not None:
            err.print(f"skipped: {p.error}")
