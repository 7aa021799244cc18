"""Feature cache: run a frozen body once per image, then train the head on the stored features.

For ``feature-extract`` the body never changes, so every epoch of the normal loop recomputes the
same features. Here the model runs once, in eval mode under ``torch.inference_mode``, with its
classifier swapped for ``nn.Identity``: the stored vector is exactly what the head ``nn.Linear``
receives (after pooling, flatten and eval-mode dropout). Features go to a memory-mapped ``.npy``
under ``cache_dir()/features/<key>/``, keyed by the model name, a hash of the body's weights and
buffers, the preprocessing, the extraction precision and every file's path, size and mtime; a second
run with other head settings reuses them. float16 storage halves the disk and page-cache size at a
relative error of about 5e-4 per value (float32 is the default and exact).

The head then trains with the runner's semantics: the same parameter groups, optimizer, warm-up +
cosine schedule, label smoothing, head dropout (re-applied to the features in training mode),
seeded shuffling, early stopping, best-epoch tracking, history rows and ``metrics.csv``. The
trained head is the model's own classifier, so the full model is ready afterwards.
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
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from headstart.config import TrainConfig
from headstart.data.cache import (
    DEFAULT_BUDGET_BYTES,
    enforce_budget,
    read_entry,
    samples_digest,
    write_entry_meta,
)
from headstart.data.datasets import ImageDataset
from headstart.data.folders import Sample
from headstart.data.transforms import build_eval_transform, build_train_transform
from headstart.errors import ConfigError
from headstart.metrics import macro_f1
from headstart.paths import cache_dir
from headstart.preprocessing import PreprocessSpec
from headstart.surgery import param_groups, prefers_channels_last, set_trainable_stages
from headstart.training.accel import SpeedSettings, keep_freed_memory
from headstart.training.callbacks import BestTracker, EarlyStopping
from headstart.training.optim import build_optimizer, build_scheduler
from headstart.training.runner import TrainResult, write_metrics_csv
from headstart.training.strategies import plan_phases
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "FeatureSet",
    "extract_features",
    "feature_key",
    "head_dropout",
    "headless",
    "train_head_on_features",
    "train_on_cached_features",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)

FEATURE_DTYPES = ("float32", "float16")


@dataclass
class FeatureSet:
    """Features of a list of samples.

    Attributes:
        features: (views, N, D) array, memory-mapped; view 0 is the eval transform, views 1..K
            the augmented ones.
        labels: (N,) int64 labels.
        folder: The cache entry.
        from_cache: Whether the entry existed (the body did not run).
        seconds: Time to extract or open.
        failures: Path -> reason for images substituted because they could not be read.
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
    views: int = 0,
    augment: str = "none",
    dtype: str = "float32",
    precision: str | None = None,
) -> str:
    """The cache key of features of ``samples`` (changes with any input that changes them)."""
    parts = [
        "v1", spec.name, fingerprint, repr(sorted(pre.to_dict().items())), str(views),
        augment if views else "-", dtype, str(precision), samples_digest(samples),
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


def _run_body(
    body: nn.Module, loader: DataLoader, out: np.ndarray, settings: SpeedSettings
) -> None:
    """Fill ``out`` (N, D) with the body's output for each batch of ``loader``."""
    device = next(body.parameters()).device
    start = 0
    with torch.inference_mode(), settings.autocast_context():
        for images, _ in loader:
            x = settings.prepare_input(images.to(device))
            feats = body(x).float().flatten(1).cpu().numpy()
            out[start : start + len(feats)] = feats
            start += len(feats)


def extract_features(
    model: nn.Module,
    spec: BackboneSpec,
    samples: Sequence[Sample],
    pre: PreprocessSpec,
    *,
    views: int = 0,
    augment: str = "light",
    batch_size: int = 64,
    dtype: str = "float32",
    settings: SpeedSettings | None = None,
    seed: int = 0,
    num_workers: int = 0,
    root: Path | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> FeatureSet:
    """Features of ``samples`` from the cache, or by running the frozen body once per view.

    Args:
        model: The full model; its classifier is bypassed and the rest runs in eval mode.
        spec: Declares the classifier.
        samples: Images and labels.
        pre: Preprocessing of the eval view (and size of augmented views).
        views: Augmented views per image in addition to the eval view.
        augment: Preset of the augmented views.
        batch_size: Images per forward pass.
        dtype: Storage type, ``float32`` (exact) or ``float16``.
        settings: Speed settings for the body (default float32, channels-last for conv nets).
        seed: Seeds the augmented views.
        num_workers: DataLoader workers for decoding.
        root: Folder of entries (default ``cache_dir()/features``).
        budget_bytes: Older entries beyond this total size are deleted.
    """
    if dtype not in FEATURE_DTYPES:
        raise ConfigError(f"feature dtype {dtype!r} is not known; use float32 or float16.")
    settings = settings or SpeedSettings(
        next(model.parameters()).device.type,
        channels_last=prefers_channels_last(model),  # the same fp32 numbers, faster
    )
    root = Path(root) if root is not None else cache_dir() / "features"
    start = time.perf_counter()
    key = feature_key(
        spec, weights_fingerprint(model, spec), pre, samples,
        views=views, augment=augment, dtype=dtype, precision=settings.autocast,
    )  # fmt: skip
    folder = root / key
    meta = read_entry(folder)
    if meta is not None:
        feats = np.load(folder / "features.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy")
        elapsed = time.perf_counter() - start
        log.info("features of %d images from cache %s", len(samples), folder)
        return FeatureSet(feats, labels, folder, True, elapsed, meta["failures"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shape = (views + 1, len(samples), spec.num_features)
    enforce_budget(root, max(0, budget_bytes - int(np.prod(shape)) * 4), keep=folder)
    feats = np.lib.format.open_memmap(folder / "features.npy", "w+", np.dtype(dtype), shape)
    failures = _fill_views(
        model, spec, samples, pre, feats, views=views, augment=augment,
        batch_size=batch_size, settings=settings, seed=seed, num_workers=num_workers,
    )  # fmt: skip
    feats.flush()
    del feats
    labels = np.array([s.label for s in samples], dtype=np.int64)
    np.save(folder / "labels.npy", labels)
    write_entry_meta(folder, {"model": spec.name, "shape": list(shape), "failures": failures})
    elapsed = time.perf_counter() - start
    log.info("extracted %s features in %.1fs into %s", shape, elapsed, folder)
    feats = np.load(folder / "features.npy", mmap_mode="r")
    return FeatureSet(feats, labels, folder, False, elapsed, failures)


def _fill_views(
    model: nn.Module,
    spec: BackboneSpec,
    samples: Sequence[Sample],
    pre: PreprocessSpec,
    out: np.ndarray,
    *,
    views: int,
    augment: str,
    batch_size: int,
    settings: SpeedSettings,
    seed: int,
    num_workers: int,
) -> dict[str, str]:
    """Run the headless body over every view; return the images that could not be read."""
    failures: dict[str, str] = {}
    was_training = model.training
    model.eval()
    try:
        with headless(model, spec) as body:
            runner = settings.prepare_model(body)
            for view in range(views + 1):
                torch.manual_seed(seed + view)
                transform = build_eval_transform(pre) if view == 0 else (
                    build_train_transform(pre, augment)
                )  # fmt: skip
                dataset = ImageDataset(samples, transform)
                loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
                _run_body(runner, loader, out[view], settings)
                failures.update(dataset.failures)
    finally:
        if settings.channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return failures


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one sample is dropped, as ``build_loaders`` does."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if n > batch_size and n % batch_size == 1:
        batches.pop()
    return batches


def _gather(features: np.ndarray, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(features[index.numpy()], dtype=np.float32)).to(device)


def _train_epoch(
    head: nn.Linear,
    train: FeatureSet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    *,
    dropout: float,
    batch_size: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """One epoch over the cached training features (a random augmented view per image if any)."""
    head.train()
    device = head.weight.device
    num_views, n = train.features.shape[:2]
    view_of = torch.randint(1, num_views, (n,), generator=generator) if num_views > 1 else None
    labels = torch.from_numpy(train.labels)
    start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
    for index in _batches(n, batch_size, generator):
        view = 0 if view_of is None else view_of[index]
        x = (
            _gather(train.features[0], index, device)
            if view_of is None
            else torch.from_numpy(
                np.asarray(train.features[view.numpy(), index.numpy()], dtype=np.float32)
            ).to(device)
        )
        y = labels[index].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = head(nn.functional.dropout(x, dropout, training=True) if dropout else x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "seconds": seconds}


def _validate(head: nn.Linear, val: FeatureSet, batch_size: int = 4096) -> dict[str, float]:
    """Plain cross-entropy, accuracy and macro F1 on the eval view of ``val``."""
    head.eval()
    device = head.weight.device
    start = time.perf_counter()
    with torch.inference_mode():
        logits = (
            torch.cat(
                [
                    head(
                        _gather(
                            val.features[0],
                            torch.arange(i, min(i + batch_size, len(val.labels))),
                            device,
                        )
                    )
                    .float()
                    .cpu()
                    for i in range(0, len(val.labels), batch_size)
                ]
            )
            if len(val.labels)
            else torch.zeros(0, head.out_features)
        )
    targets = torch.from_numpy(val.labels)
    n = max(len(targets), 1)
    return {
        "loss": float(nn.functional.cross_entropy(logits, targets, reduction="sum")) / n,
        "acc": int((logits.argmax(1) == targets).sum()) / n,
        "f1": macro_f1(logits.argmax(1), targets, head.out_features) if len(targets) else 0.0,
        "seconds": time.perf_counter() - start,
    }


def _head(model: nn.Module, spec: BackboneSpec) -> nn.Linear:
    head = model.get_submodule(spec.classifier)
    if not isinstance(head, nn.Linear):
        raise ConfigError(
            f"{spec.name}: the classifier {spec.classifier!r} is a {type(head).__name__}, not an "
            "nn.Linear; call replace_head first or train without the feature cache."
        )
    return head


def train_head_on_features(
    config: TrainConfig,
    model: nn.Module,
    spec: BackboneSpec,
    train: FeatureSet,
    val: FeatureSet,
    *,
    run_dir: Path,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    setup_seconds: float = 0.0,
) -> TrainResult:
    """Train the model's head on cached features like ``run_training`` trains a head phase.

    Uses the first phase of ``config.strategy`` (it must train the head only), the runner's
    parameter groups, optimizer, schedule, label smoothing and early stopping, writes
    ``run_dir/metrics.csv`` after every epoch and loads the best epoch's head into ``model``.
    ``setup_seconds`` (the time spent extracting the features) counts in the first epoch's
    ``seconds`` and ``images_per_s``, so the history shows what the epoch really cost.

    Returns:
        The same result ``run_training`` gives (``model`` on its device, best head loaded).
    """
    phases = plan_phases(config, spec)
    phase = phases[0]
    if phase.trainable_stages != 0:
        raise ConfigError(
            f"the feature cache trains a frozen body's head only; strategy "
            f"{config.strategy.value!r} starts with phase {phase.name!r}. Use feature-extract."
        )
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    head = _head(model, spec)
    set_trainable_stages(model, spec, 0)
    groups = param_groups(
        model, spec, lr=phase.lr, backbone_lr_factor=config.backbone_lr_factor,
        layer_decay=config.layer_decay, weight_decay=config.weight_decay,
    )  # fmt: skip
    optimizer = build_optimizer(
        groups, config.optimizer, lr=phase.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    steps = len(_batches(train.features.shape[1], config.batch_size, torch.Generator()))
    scheduler = build_scheduler(
        optimizer,
        total_steps=max(1, phase.epochs * steps),
        warmup_steps=round(config.warmup_epochs * steps),
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    tracker, stopper = (
        BestTracker(config.monitor),
        EarlyStopping(config.monitor, patience=config.patience),
    )
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    dropout, stopped = head_dropout(model, spec), False
    for epoch in range(1, phase.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        tr = _train_epoch(
            head, train, optimizer, scheduler, loss_fn,
            dropout=dropout, batch_size=config.batch_size, generator=generator,
        )  # fmt: skip
        va = _validate(head, val)
        tr["seconds"] += setup_seconds if epoch == 1 else 0.0
        row = {
            "epoch": epoch, "phase": phase.name, "train_loss": tr["loss"], "train_acc": tr["acc"],
            "val_loss": va["loss"], "val_acc": va["acc"], "val_f1": va["f1"], "lr": lr,
            "seconds": tr["seconds"] + va["seconds"],
            "images_per_s": train.features.shape[1] / max(tr["seconds"], 1e-9),
        }  # fmt: skip
        history.append(row)
        stop = len(phases) == 1 and stopper.step(row[config.monitor])
        if tracker.update(row[config.monitor], epoch):
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        write_metrics_csv(Path(run_dir) / "metrics.csv", history)
        if on_epoch is not None:
            on_epoch(row)
        if stop:
            stopped = True
            log.info(
                "early stopping: %s did not improve for %d epochs", config.monitor, config.patience
            )
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    best_row = history[tracker.best_epoch - 1] if tracker.best_epoch >= 1 else history[-1]
    return TrainResult(
        history=history, best_epoch=best_row["epoch"], best_metrics=dict(best_row),
        model=model, phases=phases[:1], stopped_early=stopped,
    )  # fmt: skip


def train_on_cached_features(
    config: TrainConfig,
    model: nn.Module,
    spec: BackboneSpec,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    pre: PreprocessSpec,
    *,
    run_dir: Path,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    settings: SpeedSettings | None = None,
    views: int = 0,
    root: Path | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> tuple[TrainResult, list[FeatureSet]]:
    """``feature-extract`` end to end: features (cached) of both splits, then the head.

    Returns:
        The training result and the train / val feature sets (for their ``failures``).
    """
    common: dict[str, Any] = {
        "batch_size": max(config.batch_size, 64), "settings": settings, "seed": config.seed,
        "num_workers": config.num_workers, "root": root, "budget_bytes": budget_bytes,
    }  # fmt: skip
    with keep_freed_memory():  # no page faults for every batch's activations
        train = extract_features(
            model, spec, train_samples, pre, views=views, augment=config.augment.value, **common
        )
        val = extract_features(model, spec, val_samples, pre, **common)
    result = train_head_on_features(
        config, model, spec, train, val, run_dir=run_dir, on_epoch=on_epoch,
        setup_seconds=train.seconds + val.seconds,
    )  # fmt: skip
    return result, [train, val]
