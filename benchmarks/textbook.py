"""The transfer-learning recipe that tutorials teach, kept faithful, as the benchmark baseline.

``ImageFolder`` + ``Resize(S)``, ``CenterCrop(S)``, ``ToTensor()``, ``Normalize(mean, std)``;
``DataLoader(batch_size=32, shuffle=True)`` with default workers; per epoch ``model.train()``,
forward, ``CrossEntropyLoss``, backward, step, then ``model.eval()`` and validation under
``torch.no_grad()``. Feature extraction freezes everything but a new head (Adam, lr 1e-3); full
fine-tuning trains everything (SGD, lr 1e-3, momentum 0.9).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from headstart.surgery import replace_head
from headstart.zoo import create_backbone

MODEL = "bundled:efficientnet_lite0"


def build_model(num_classes: int, seed: int = 0) -> tuple[nn.Module, Any]:
    """The bundled EfficientNet-Lite0 with a new seeded head (the same weights for both sides)."""
    model, spec = create_backbone(MODEL, pretrained=True)
    torch.manual_seed(seed)
    return replace_head(model, spec, num_classes), spec


def loaders(data: Path, size: int, spec: Any) -> tuple[DataLoader, DataLoader]:
    """Tutorial-style train / val loaders over ``data/train`` and ``data/val``."""
    pre = spec.preprocessing
    tf = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(pre.mean, pre.std),
        ]
    )
    train = datasets.ImageFolder(str(data / "train"), tf)
    val = datasets.ImageFolder(str(data / "val"), tf)
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=32)


def run_epoch(
    model: nn.Module,
    train: DataLoader,
    val: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    max_batches: int | None = None,
) -> dict[str, float]:
    """One textbook epoch: train pass, then validation pass (skipped when ``max_batches``)."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    start, seen = time.perf_counter(), 0
    for i, (images, labels) in enumerate(train):
        if max_batches is not None and i >= max_batches:
            break
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    train_seconds = time.perf_counter() - start
    correct = total = 0
    if max_batches is None:
        model.eval()
        with torch.no_grad():
            for images, labels in val:
                correct += int((model(images).argmax(1) == labels).sum())
                total += len(labels)
    return {
        "seconds": time.perf_counter() - start,
        "train_images_per_s": seen / train_seconds,
        "val_acc": correct / max(total, 1),
    }


def feature_extract(data: Path, size: int, epochs: int) -> dict[str, float]:
    """Frozen body, new head trained with Adam(1e-3); returns wall seconds and final val acc."""
    start = time.perf_counter()
    model, spec = build_model(10)
    for p in model.parameters():
        p.requires_grad = False
    head = model.get_submodule(spec.classifier)
    for p in head.parameters():
        p.requires_grad = True
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    train, val = loaders(data, size, spec)
    rows = [run_epoch(model, train, val, optimizer) for _ in range(epochs)]
    return {"seconds": time.perf_counter() - start, "val_acc": rows[-1]["val_acc"]}


def full_images_per_s(data: Path, size: int, batches: int) -> float:
    """Training images/s of full fine-tuning with SGD(1e-3, momentum 0.9) over ``batches``."""
    model, spec = build_model(10)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    train, val = loaders(data, size, spec)
    run_epoch(model, train, val, optimizer, max_batches=1)  # warm-up
    return run_epoch(model, train, val, optimizer, max_batches=batches)["train_images_per_s"]


def _frozen_body(model: nn.Module, spec: Any) -> list[nn.Parameter]:
    """Freeze everything but the head (as tutorials do); return the head's parameters."""
    for p in model.parameters():
        p.requires_grad = False
    head = list(model.get_submodule(spec.classifier).parameters())
    for p in head:
        p.requires_grad = True
    return head


def train_epochs(data: Path, size: int, head_epochs: int, full_epochs: int) -> dict[str, Any]:
    """The textbook's two-phase recipe (or full fine-tuning with ``head_epochs=0``), whole epochs.

    Head epochs: frozen body, Adam(1e-3) on the head. Full epochs: everything unfrozen,
    SGD(1e-3, momentum 0.9). Returns per-epoch rows (``seconds`` with validation,
    ``train_images_per_s`` of the whole training pass) and the training images/s over all epochs.
    """
    model, spec = build_model(10)
    train, val = loaders(data, size, spec)
    rows = []
    if head_epochs:
        optimizer = torch.optim.Adam(_frozen_body(model, spec), lr=1e-3)
        rows += [run_epoch(model, train, val, optimizer) for _ in range(head_epochs)]
    for p in model.parameters():
        p.requires_grad = True
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    rows += [run_epoch(model, train, val, optimizer) for _ in range(full_epochs)]
    n = len(train.dataset)  # type: ignore[arg-type]
    train_seconds = sum(n / r["train_images_per_s"] for r in rows)
    return {
        "rows": rows,
        "train_images_per_s": n * len(rows) / train_seconds,
        "seconds": sum(r["seconds"] for r in rows),
        "val_acc": rows[-1]["val_acc"],
    }
