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


def engine_settings(**changes):
    """EngineSettings as the tests' runs use them (head lr 0.01 warm-up half an epoch)."""
    from headstart.config import BnStats
    from headstart.training.engine import EngineSettings
    from headstart.training.phase import OptimSettings

    base = {"optim": OptimSettings(warmup_epochs=0.5), "bn": BnStats.ADAPT}
    return EngineSettings(**{**base, **changes})


def run_engine(
    folder,
    spec_and_model,
    train_ds,
    val_ds,
    *,
    strategy: str = "feature-extract",
    epochs: int = 3,
    head_epochs: int = 1,
    unfreeze_stages: int = 1,
    lr: float = 0.01,
    batch_size: int = 8,
    callbacks=None,
    resume: bool = False,
    run_config=None,
    sampler: str = "shuffle",
    **settings,
):
    """Train with the engine on image batches of two tensor datasets; returns the TrainResult."""
    from lightning_fabric import Fabric

    from headstart.run_folder import RunFolder
    from headstart.training.batches import ImageBatches
    from headstart.training.engine import train_phases
    from headstart.training.strategies import plan_phases

    model, spec = spec_and_model
    fabric = Fabric(accelerator="cpu", devices=1)
    phases = plan_phases(
        strategy, spec, epochs=epochs, head_epochs=head_epochs, unfreeze_stages=unfreeze_stages,
        lr=lr,
    )  # fmt: skip
    batches = ImageBatches.create(
        fabric, train_ds, val_ds, batch_size=batch_size, num_workers=0, seed=0, sampler=sampler
    )
    config = run_config or {"strategy": strategy, "lr": lr, "epochs": epochs}
    return train_phases(
        fabric, model, spec, phases, lambda phase: batches, engine_settings(**settings),
        folder=RunFolder(folder), run_config=config, callbacks=callbacks, resume=resume,
    )  # fmt: skip
