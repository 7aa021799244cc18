"""Feature cache: run a frozen body once per image and keep what the head receives.

A phase that trains the head only would recompute the same body outputs every epoch. Here the
model runs once, in eval mode under ``torch.inference_mode``, with its classifier swapped for
``nn.Identity``: the stored vector is exactly what the head ``nn.Linear`` receives (after pooling,
flatten and eval-mode dropout). Features go to a memory-mapped ``.npy`` under
``cache_dir()/features/<key>/``, keyed by the model name, a hash of the body's weights and buffers,
the preprocessing, the extraction precision and every file's path, size and mtime; a second run
with other head settings reuses them. float16 storage halves the disk and page-cache size at a
relative error of about 5e-4 per value (float32 is the default and exact). The engine trains the
head on them through :class:`headstart.training.batches.FeatureBatches`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from headstart.data.cache_store import (
    enforce_budget,
    new_entry,
    publish_entry,
    read_entry,
    samples_digest,
    write_entry_meta,
)
from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample
from headstart.data.image_cache import CachedImageDataset
from headstart.data.image_store import DecodedImageCache
from headstart.data.transforms import build_eval_transform
from headstart.errors import ConfigError
from headstart.files import cache_budget, cache_dir
from headstart.preprocessing import PreprocessSpec
from headstart.progress import report
from headstart.speed.settings import SpeedSettings, prefers_channels_last
from headstart.speed.trial import tune_speed
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "FeatureSet",
    "extract_features",
    "extraction_settings",
    "feature_key",
    "head_dropout",
    "headless",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)

FEATURE_DTYPES = ("float32", "float16")


@dataclass
class FeatureSet:
    """Features of a list of samples.

    Attributes:
        features: (N, D) array, memory-mapped.
        labels: (N,) int64 labels.
        folder: The cache entry.
        from_cache: Whether the entry existed (the body did not run).
        seconds: Time to extract or open.
        failures: Path -> reason for images that could not be read (the next readable image
            stands in for each, as in ``ImageDataset``).
    """

    features: np.ndarray
    labels: np.ndarray
    folder: Path
    from_cache: bool
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)


def weights_fingerprint(model: nn.Module, spec: BackboneSpec) -> str:
    """Hash of the body's state dict (names, shapes and bytes of weights and buffers)."""
    digest = hashlib.sha256()
    prefix = spec.classifier + "."
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            continue
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def feature_key(
    spec: BackboneSpec,
    fingerprint: str,
    pre: PreprocessSpec,
    samples: Sequence[Sample],
    *,
    dtype: str = "float32",
    precision: str | None = None,
) -> str:
    """The cache key of features of ``samples`` (changes with any input that changes them)."""
    parts = [
        "v2", spec.name, fingerprint, repr(sorted(pre.to_dict().items())), dtype,
        str(precision), samples_digest(samples),
    ]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


@contextlib.contextmanager
def headless(model: nn.Module, spec: BackboneSpec) -> Iterator[nn.Module]:
    """Temporarily replace the classifier at ``spec.classifier`` by ``nn.Identity``."""
    parent_path, _, attr = spec.classifier.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    head = getattr(parent, attr)
    setattr(parent, attr, nn.Identity())
    try:
        yield model
    finally:
        setattr(parent, attr, head)


def head_dropout(model: nn.Module, spec: BackboneSpec) -> float:
    """Dropout probability applied just before the classifier in training mode.

    torchvision-style heads: ``nn.Dropout`` siblings before the classifier in an ``nn.Sequential``;
    timm heads: the model's ``drop_rate``.
    """
    parent_path, _, attr = spec.classifier.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(parent, nn.Sequential):
        keep = 1.0
        for name, module in parent.named_children():
            if name == attr:
                break
            if isinstance(module, nn.Dropout):
                keep *= 1.0 - module.p
        return 1.0 - keep
    return float(getattr(model, "drop_rate", 0.0) or 0.0)


def extraction_settings(model: nn.Module, spec: BackboneSpec, input_size: int) -> SpeedSettings:
    """The fastest way to run the frozen body here: a short timed trial, cached per host+model."""
    device = next(model.parameters()).device
    shape = (32, 3, input_size, input_size)
    sample = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device)
    return tune_speed(model, sample, key=spec.name, mode="infer")


def extract_features(
    model: nn.Module,
    spec: BackboneSpec,
    samples: Sequence[Sample],
    pre: PreprocessSpec,
    *,
    batch_size: int = 64,
    dtype: str = "float32",
    settings: SpeedSettings | None = None,
    num_workers: int = 0,
    root: Path | None = None,
    budget_bytes: int | None = None,
    images: DecodedImageCache | None = None,
) -> FeatureSet:
    """Features of ``samples`` from the cache, or by running the frozen body once per image.

    Args:
        model: The full model; its classifier is bypassed and the rest runs in eval mode.
        spec: Declares the classifier.
        samples: Images and labels.
        pre: Preprocessing (the eval transform).
        batch_size: Images per forward pass.
        dtype: Storage type, ``float32`` (exact) or ``float16``.
        settings: Speed settings for the body (default float32, channels-last for conv nets).
        num_workers: DataLoader workers for decoding.
        root: Folder of entries (default ``cache_dir()/features``).
        budget_bytes: Older entries beyond this total size are deleted (default
            ``files.cache_budget()``).
        images: A decoded-image store entry; when it holds every sample at ``pre``'s resize
            size, the body's inputs are cropped from it (the same numbers, no decoding).
    """
    if dtype not in FEATURE_DTYPES:
        raise ConfigError(f"feature dtype {dtype!r} is not known; use float32 or float16.")
    settings = settings or SpeedSettings(
        next(model.parameters()).device.type,
        channels_last=prefers_channels_last(model),  # the same fp32 numbers, faster
    )
    root = Path(root) if root is not None else cache_dir() / "features"
    start = time.perf_counter()
    fingerprint = weights_fingerprint(model, spec)
    key = feature_key(spec, fingerprint, pre, samples, dtype=dtype, precision=settings.autocast)
    folder = root / key
    meta = read_entry(folder)
    if meta is not None:
        feats = np.load(folder / "features.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy")
        elapsed = time.perf_counter() - start
        log.info("features of %d images from cache %s", len(samples), folder)
        return FeatureSet(feats, labels, folder, True, elapsed, meta["failures"])
    final, folder = folder, new_entry(root, key)  # published as root/key once complete
    shape = (len(samples), spec.num_features)
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
    budget = cache_budget() if budget_bytes is None else budget_bytes
    in_use = [folder] + ([images.folder] if images is not None else [])
    enforce_budget(root, max(0, budget - needed), keep=in_use)
    feats = np.lib.format.open_memmap(folder / "features.npy", "w+", np.dtype(dtype), shape)
    try:
        failures = _run_body(
            model, spec, _inputs(samples, pre, images), feats, batch_size=batch_size,
            settings=settings, num_workers=num_workers,
        )  # fmt: skip
    except BaseException:
        del feats
        shutil.rmtree(folder, ignore_errors=True)  # a failed or interrupted extraction
        raise
    feats.flush()
    del feats
    labels = np.array([s.label for s in samples], dtype=np.int64)
    np.save(folder / "labels.npy", labels)
    write_entry_meta(folder, {"model": spec.name, "shape": list(shape), "failures": failures})
    folder = publish_entry(folder, root, key)
    assert folder == final
    elapsed = time.perf_counter() - start
    log.info("extracted %s features in %.1fs into %s", shape, elapsed, folder)
    feats = np.load(folder / "features.npy", mmap_mode="r")
    return FeatureSet(feats, labels, folder, False, elapsed, failures)


def _inputs(
    samples: Sequence[Sample], pre: PreprocessSpec, images: DecodedImageCache | None
) -> ImageDataset | CachedImageDataset:
    """The body's eval inputs: cropped from ``images`` when it holds them all, else decoded."""
    if images is not None and images.holds([s.path for s in samples], pre):
        return CachedImageDataset(samples, pre, None, images)
    return ImageDataset(samples, build_eval_transform(pre))


def _run_body(
    model: nn.Module,
    spec: BackboneSpec,
    dataset: ImageDataset | CachedImageDataset,
    out: np.ndarray,
    *,
    batch_size: int,
    settings: SpeedSettings,
    num_workers: int,
) -> dict[str, str]:
    """Fill ``out`` (N, D) with the headless body's outputs; return the unreadable images."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with headless(model, spec) as body:
            runner = settings.prepare_model(body)  # outside inference mode: parameters stay normal
            with torch.inference_mode(), settings.autocast_context():
                _fill(runner, loader, out, settings, device)
    finally:
        SpeedSettings(settings.device_type).prepare_model(model)  # contiguous, plain layers
        model.train(was_training)
    return dict(dataset.failures)


def _fill(
    body: nn.Module | Callable[..., torch.Tensor],
    loader: DataLoader,
    out: np.ndarray,
    settings: SpeedSettings,
    device: torch.device,
) -> None:
    start = 0
    total = len(loader.dataset)  # type: ignore[arg-type]
    for images, _ in loader:
        feats = body(settings.prepare_input(images.to(device))).float().flatten(1)
        out[start : start + len(feats)] = feats.cpu().numpy()
        start += len(feats)
        report("extracting features", start, total)
