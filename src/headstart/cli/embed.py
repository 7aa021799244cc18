"""``headstart embed``: one vector per image from a pretrained body, into .npz or Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from headstart.cli.options import BatchSize, RunDevice, WeightsFile
from headstart.config import DEFAULT_MODEL
from headstart.defaults import INFERENCE_BATCH_SIZE

if TYPE_CHECKING:
    from headstart.pipeline.embed import Embeddings

Data = Annotated[
    Path,
    typer.Argument(
        help="Images: DATA/<class>/*, DATA/train|val|test/<class>/*, or a folder of images.",
        show_default=False,
    ),
]
Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="The file to write: .npz (numpy) or .parquet (needs pyarrow); outside DATA, and an "
        "existing file is replaced only if this command wrote it.",
        show_default=False,
    ),
]
Model = Annotated[
    str, typer.Option("--model", "-m", help="Zoo model name (bundled:, tv:, timm:, hf-hub:).")
]
ImageSize = Annotated[
    int | None,
    typer.Option(
        min=8,
        max=2048,
        help="Input size in pixels (default: the weights' own).",
        show_default=False,
    ),
]


def embed(
    data: Data,
    out: Out,
    model: Model = DEFAULT_MODEL,
    image_size: ImageSize = None,
    batch_size: BatchSize = INFERENCE_BATCH_SIZE,
    device: RunDevice = "auto",
    weights: WeightsFile = None,
) -> None:
    """Write one vector per image (what the pretrained head would see) with its path and class.

    Vectors go through the feature cache: embedding the same images with the same model again
    reads them back instead of running the network.

    Example: headstart embed photos/ --model tv:resnet50 --out photos.npz
    """
    from headstart.pipeline.embed import embed_folder
    from headstart.pipeline.embed_file import check_embed_out, write_embeddings
    from headstart.speed import keep_freed_memory

    check_embed_out(out, data)  # before the model is built and run
    with keep_freed_memory():
        result = embed_folder(
            data, model, image_size=image_size, batch_size=batch_size, device=device,
            weights_file=weights,
        )  # fmt: skip
    write_embeddings(result, out, data=data)
    _print_summary(result, out)


def _print_summary(result: Embeddings, path: Path) -> None:
    from headstart.cli.console import err, out

    for skipped, reason in result.skipped.items():
        err.print(f"skipped {skipped}: {reason}")
    count, width = result.vectors.shape
    classes = f"{len(result.classes)} classes" if result.classes else "no classes"
    cached = " (from the feature cache)" if result.from_cache else ""
    out.print(
        f"{count} images, {width} values each, {classes}; {result.model} at "
        f"{result.preprocessing.input_size} px on {result.device}{cached}, {result.seconds:.1f}s"
    )
    out.print(f"embeddings written to {path}")
