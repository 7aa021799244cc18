"""Test helpers for training: a BackboneSpec built from a timm model, tiny synthetic data."""

from __future__ import annotations

import timm
import torch
from torch import nn
from torch.utils.data import TensorDataset

from headstart.preprocessing import PreprocessSpec
from headstart.zoo.spec import BackboneSpec


def spec_from_timm(model: nn.Module, arch: str) -> BackboneSpec:
    """Classifier from ``pretrained_cfg``; one stage per top-level child holding parameters."""
    classifier = model.pretrained_cfg["classifier"]
    top = classifier.split(".")[0]
    stages = []
    for child_name, child in model.named_children():
        names = tuple(f"{child_name}.{n}" for n, _ in child.named_parameters())
        if child_name != top and names:
            stages.append(names)
    return BackboneSpec(
        name=f"timm:{arch}",
        source="timm",
        arch=arch,
        preprocessing=PreprocessSpec(input_size=32),
        num_features=model.num_features,
        classifier=classifier,
        stages=tuple(stages),
        pretrained=False,
    )


def tiny_model(arch: str = "test_resnet", num_classes: int = 2, seed: int = 0):
    """A seeded timm test model with a fresh head, and its spec."""
    from headstart.surgery import replace_head

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    spec = spec_from_timm(model, arch)
    return replace_head(model, spec, num_classes), spec


def bright_dark(n: int = 32, size: int = 32, seed: int = 0) -> TensorDataset:
    """Class 1 = bright images, class 0 = dark images (a task any model learns fast)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randn(n, 3, size, size, generator=g) * 0.3
    images += (labels.float() * 2 - 1)[:, None, None, None]
    return TensorDataset(images, labels)
