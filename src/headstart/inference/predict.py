"""Predict labels for images with a loaded model, on the model's device.

The pieces every prediction path shares (files here, uploads in the server, the export's parity
check) live here once: :func:`decode_images` (the one decode function over a batch),
:class:`ModelRunner` (eval mode, memory layout, device) and :func:`top_k`.

Test-time augmentation (``tta``, off by default) averages the softmax of several views of each
image: ``flip`` the image and its horizontal mirror (2 passes); ``crops`` five crops of the model's
input size, the centre and the four corners (5 passes), cut from the square the evaluation centre
crop is taken from (the short side resized to ``input_size / crop_pct``; to at least
``input_size / CROPS_FRACTION`` for models whose crop keeps the whole image, so the corners differ).
The averaged probabilities are returned as their logarithm in place of logits, so a softmax of
them gives them back, normalised, and cross-entropy scores them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from headstart.artifact import LoadedModel
from headstart.data.images import DEFAULT_MAX_PIXELS, ImageSource, image_to_tensor
from headstart.defaults import INFERENCE_BATCH_SIZE, TOPK
from headstart.errors import ConfigError, DataError
from headstart.preprocessing import PreprocessSpec
from headstart.progress import report
from headstart.speed.settings import prefers_channels_last

if TYPE_CHECKING:
    from headstart.data.image_store import DecodedImageCache

__all__ = [
    "CROPS_FRACTION",
    "TTA_MODES",
    "ModelRunner",
    "Prediction",
    "decode_images",
    "decode_one",
    "logits_for_files",
    "predict_files",
    "predict_proba_files",
    "top_k",
    "tta_logits",
    "tta_preprocessing",
]

T = TypeVar("T")

TTA_MODES = ("none", "flip", "crops")
"""Test-time augmentation: none, the image and its mirror, or five crops (see the module)."""
CROPS_FRACTION = 0.875
"""``crops`` cuts its five crops from a square at least ``input_size / CROPS_FRACTION`` wide."""


@dataclass(frozen=True)
class Prediction:
    """Top-k labels of one image, best first; ``error`` is set instead when it could not be read."""

    path: str
    labels: tuple[str, ...] = ()
    probs: tuple[float, ...] = ()
    error: str | None = None
    indices: tuple[int, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        top = [{"label": lab, "prob": round(p, 6)} for lab, p in zip(self.labels, self.probs)]
        return {"path": self.path, "top": top}


class ModelRunner:
    """A loaded model made ready for inference: eval mode, its fastest memory layout, its device.

    Convolutional networks are switched to channels-last (in place; 1.5-2x faster on CPUs).
    Inputs are moved to the model's device; outputs come back as float32 on the CPU.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.model = loaded.model.eval()
        channels_last = prefers_channels_last(self.model)
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.layout)
        self.device = loaded.device

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, num_classes) for preprocessed images (N, 3, H, W)."""
        with torch.inference_mode():
            batch = images.to(self.device, memory_format=self.layout)
            return self.model(batch).float().cpu()

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, num_classes) for preprocessed images (N, 3, H, W)."""
        return torch.softmax(self.logits(images), dim=1)


def _check_tta(tta: str) -> str:
    if tta not in TTA_MODES:
        raise ConfigError(f"unknown --tta {tta!r}; use one of {', '.join(TTA_MODES)}.")
    return tta


def tta_preprocessing(preprocessing: PreprocessSpec, tta: str) -> PreprocessSpec:
    """How images are decoded for ``tta``: the model's own spec, or for ``crops`` the square that
    the five crops are cut from.

    Raises:
        ConfigError: ``tta`` is not one of ``TTA_MODES``.
    """
    if _check_tta(tta) != "crops":
        return preprocessing
    side = round(preprocessing.input_size / min(preprocessing.crop_pct, CROPS_FRACTION))
    return replace(preprocessing, input_size=side, crop_pct=1.0)


def tta_logits(
    runner: ModelRunner, images: torch.Tensor, *, tta: str, input_size: int
) -> torch.Tensor:
    """Logits of ``images`` (decoded with :func:`tta_preprocessing`) under ``tta``.

    With ``none`` the model's logits; otherwise the log of the mean softmax over the views
    (computed as a log-sum-exp, so tiny probabilities do not underflow).
    """
    if _check_tta(tta) == "none":
        return runner.logits(images)
    if tta == "flip":
        views: Sequence[torch.Tensor] = (images, images.flip(-1))
    else:
        from torchvision.transforms.v2.functional import five_crop

        views = five_crop(images, [input_size, input_size])
    log_probs = torch.stack([torch.log_softmax(runner.logits(v), dim=1) for v in views])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(views))


def decode_one(
    source: ImageSource,
    preprocessing: PreprocessSpec,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[torch.Tensor | None, str | None]:
    """Decode one image file or bytes into a model input, or say why it cannot be.

    A file the one decode function refuses (``DataError``) and one that runs out of memory on its
    way to a tensor (an extremely thin or wide image) both come back as a reason; nothing else is
    caught.

    Returns:
        The input tensor and None, or None and the reason.
    """
    try:
        return image_to_tensor(source, preprocessing, max_pixels=max_pixels), None
    except DataError as exc:
        return None, str(exc)
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    size = preprocessing.input_size
    return None, (
        f"cannot read image {name}: it is too large to decode into the model's {size}x{size} "
        "input (out of memory; an extremely thin or wide image?); crop or shrink it."
    )


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or torch's CPU allocator failing (a RuntimeError)."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)


def decode_images(
    sources: Sequence[ImageSource],
    preprocessing: PreprocessSpec,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[torch.Tensor | None, list[str | None]]:
    """Decode image files or bytes into one input batch (each through :func:`decode_one`).

    Returns:
        The readable images stacked (None when none is), and for each source, in order, None
        or the reason it could not be read.
    """
    tensors: list[torch.Tensor] = []
    errors: list[str | None] = []
    for source in sources:
        tensor, error = decode_one(source, preprocessing, max_pixels=max_pixels)
        if tensor is not None:
            tensors.append(tensor)
        errors.append(error)
    return (torch.stack(tensors) if tensors else None), errors


def top_k(
    probs: torch.Tensor, classes: Sequence[str], k: int
) -> list[tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]]]:
    """The ``k`` most likely (labels, probabilities, indices) of each row, best first.

    ``k`` is capped at the number of classes.
    """
    if not len(probs):
        return []
    values, indices = probs.topk(min(k, len(classes)), dim=1)
    return [
        (tuple(classes[i] for i in idx), tuple(float(v) for v in vals), tuple(idx))
        for vals, idx in zip(values.tolist(), indices.tolist())
    ]


_Batch = tuple[list[str], torch.Tensor | None, list[tuple[str, str]]]


def _batches(
    paths: Sequence[str],
    preprocessing: PreprocessSpec,
    batch_size: int,
    *,
    store: DecodedImageCache | None = None,
) -> Iterator[_Batch]:
    """Yield (readable paths, their stacked images, [(unreadable path, reason)]) per batch,
    decoded, or cropped from ``store`` (which holds every path)."""
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        if store is not None:
            from headstart.data.image_cache import cached_eval_inputs

            images, errors = cached_eval_inputs(store, chunk, preprocessing)
        else:
            images, errors = decode_images(chunk, preprocessing)
        good = [p for p, error in zip(chunk, errors) if error is None]
        bad = [(p, error) for p, error in zip(chunk, errors) if error is not None]
        yield good, images, bad


def _prefetched(iterator: Iterator[T]) -> Iterator[T]:
    """Produce the next item in a background thread while the caller works on the current one.

    Decoding (PIL) releases the GIL, so decoding batch k+1 overlaps the forward pass of batch k.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="headstart-decode") as pool:
        future = pool.submit(next, iterator, None)
        while (item := future.result()) is not None:
            future = pool.submit(next, iterator, None)
            yield item


def logits_for_files(
    loaded: LoadedModel,
    paths: Sequence[str | Path],
    *,
    batch_size: int = INFERENCE_BATCH_SIZE,
    tta: str = "none",
    task: str = "predicting",
    images: DecodedImageCache | None = None,
) -> tuple[list[str], torch.Tensor, list[tuple[str, str]]]:
    """Raw model outputs for each readable file, run on the model's device.

    Decoding overlaps the forward pass.

    Args:
        tta: Test-time augmentation, one of ``TTA_MODES``; with one, the outputs are the log of
            the averaged probabilities (see the module).
        task: The name progress is reported under (:mod:`headstart.progress`).
        images: A decoded-image store entry; when it holds every file at the model's resize
            size, the inputs are cropped from it (the same numbers, no decoding).

    Returns:
        The readable paths, their logits (N, num_classes) on the CPU, and (path, reason) for the
        others.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}.")
    decode_as = tta_preprocessing(loaded.preprocessing, tta)
    runner = ModelRunner(loaded)
    good_all: list[str] = []
    outputs: list[torch.Tensor] = []
    bad_all: list[tuple[str, str]] = []
    size = loaded.preprocessing.input_size
    names = [str(p) for p in paths]
    if images is not None and images.holds(names, decode_as):
        batches = _batches(names, decode_as, batch_size, store=images)
    else:
        batches = _prefetched(_batches(names, decode_as, batch_size))
    for good, inputs, bad in batches:
        bad_all.extend(bad)
        if inputs is not None:
            outputs.append(tta_logits(runner, inputs, tta=tta, input_size=size))
            good_all.extend(good)
        report(task, len(good_all) + len(bad_all), len(paths))
    logits = torch.cat(outputs) if outputs else torch.empty(0, len(loaded.classes))
    return good_all, logits, bad_all


def predict_proba_files(
    loaded: LoadedModel,
    paths: Sequence[str | Path],
    *,
    batch_size: int = INFERENCE_BATCH_SIZE,
    tta: str = "none",
) -> tuple[list[str], torch.Tensor, list[tuple[str, str]]]:
    """Class probabilities for each readable file, run on the model's device.

    Args:
        tta: Test-time augmentation, one of ``TTA_MODES`` (the probabilities are averaged).

    Returns:
        The readable paths, their probabilities (N, num_classes) on the CPU, and (path, reason)
        for the others.
    """
    good, logits, bad = logits_for_files(loaded, paths, batch_size=batch_size, tta=tta)
    return good, torch.softmax(logits, dim=1), bad


def predict_files(
    loaded: LoadedModel,
    paths: Sequence[str | Path],
    *,
    topk: int = TOPK,
    batch_size: int = INFERENCE_BATCH_SIZE,
    tta: str = "none",
) -> list[Prediction]:
    """Top-k predictions for each file, in the order given; unreadable files carry ``error``.

    Args:
        tta: Test-time augmentation, one of ``TTA_MODES``.
    """
    if topk < 1:
        raise ConfigError(f"--topk must be at least 1, got {topk}.")
    good, probs, bad = predict_proba_files(loaded, paths, batch_size=batch_size, tta=tta)
    by_path = {
        path: Prediction(path=path, labels=labels, probs=values, indices=indices)
        for path, (labels, values, indices) in zip(good, top_k(probs, loaded.classes, topk))
    }
    by_path.update((path, Prediction(path=path, error=reason)) for path, reason in bad)
    return [by_path[str(p)] for p in paths]
