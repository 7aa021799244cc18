"""Model surgery: a new head, freezing with an explicit BatchNorm policy, and parameter groups.

Everything here works on parameter *names* declared by a :class:`BackboneSpec` (the classifier's
dotted path and the body's stages), never on guesses about the architecture.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from headstart.config import BnStats
from headstart.errors import ConfigError, ModelError
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "head_parameter_names",
    "param_groups",
    "replace_head",
    "set_trainable_stages",
    "train_mode",
    "trainable_parameter_names",
]

logger = logging.getLogger(__name__)


def replace_head(model: nn.Module, spec: BackboneSpec, num_classes: int) -> nn.Module:
    """Swap the classifier at ``spec.classifier`` for a fresh ``nn.Linear`` with ``num_classes``.

    The new layer sits at the same dotted path, so parameter names do not change. Its weights are
    drawn from a truncated normal (std 0.01) and its bias is zero. Seed before calling for
    reproducible runs.

    Returns:
        The same model, modified in place.
    """
    if num_classes < 1:
        raise ConfigError(f"a classifier needs at least 1 class, got {num_classes}.")
    parent_path, _, attr = spec.classifier.rpartition(".")
    try:
        parent = model.get_submodule(parent_path) if parent_path else model
        old = getattr(parent, attr)
    except AttributeError:
        raise ModelError(
            f"{spec.name}: classifier {spec.classifier!r} is not a submodule of the model; "
            "the backbone spec does not match this network."
        ) from None
    reference = next(iter(old.parameters()), None)
    if reference is None:
        reference = next(iter(model.parameters()), None)
    head = nn.Linear(spec.num_features, num_classes)
    if reference is not None:
        head = head.to(device=reference.device, dtype=reference.dtype)
    nn.init.trunc_normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    setattr(parent, attr, head)
    logger.info("new head %s: Linear(%d, %d)", spec.classifier, spec.num_features, num_classes)
    return model


def head_parameter_names(model: nn.Module, spec: BackboneSpec) -> set[str]:
    """Names of the classifier's parameters."""
    prefix = spec.classifier + "."
    return {name for name, _ in model.named_parameters() if name.startswith(prefix)}


def trainable_parameter_names(model: nn.Module, spec: BackboneSpec, n: int | None) -> set[str]:
    """Names that :func:`set_trainable_stages` would make trainable (validates ``n``)."""
    if n is None:
        return {name for name, _ in model.named_parameters()}
    if n < 0 or n > spec.num_stages:
        raise ConfigError(
            f"--unfreeze-stages {n} is beyond the {spec.num_stages} stages of {spec.name}; "
            f"use 0..{spec.num_stages}."
        )
    names = head_parameter_names(model, spec)
    for stage in spec.stages[spec.num_stages - n :]:
        names.update(stage)
    return names


def set_trainable_stages(
    model: nn.Module, spec: BackboneSpec, n: int | None, *, bn: BnStats = BnStats.ADAPT
) -> None:
    """Train the head and the last ``n`` body stages; freeze the rest.

    Args:
        model: The network whose parameter names match ``spec``.
        spec: Declares the classifier and the body stages (input-first).
        n: Number of body stages to train counting back from the output; ``0`` trains the head
            only, ``None`` trains everything.
        bn: What norm layers do with their running statistics (logged here; it takes effect
            through :func:`train_mode`).

    Raises:
        ConfigError: If ``n`` is negative or larger than ``spec.num_stages``.
    """
    trainable = trainable_parameter_names(model, spec, n)
    counts = [0, 0]
    for name, param in model.named_parameters():
        on = name in trainable
        param.requires_grad_(on)
        counts[on] += param.numel()
    what = "all stages" if n is None else f"head + last {n} of {spec.num_stages} stages"
    logger.info(
        "trainable: %s (%d trainable, %d frozen parameters); BatchNorm statistics: %s",
        what,
        counts[1],
        counts[0],
        BnStats(bn).value,
    )


def train_mode(model: nn.Module, *, bn: BnStats = BnStats.ADAPT) -> nn.Module:
    """Put ``model`` in train mode while honouring what BatchNorm statistics may do.

    Every norm layer with running statistics (any ``_NormBase``: batch, instance and timm's
    BatchNormAct) whose parameters are all frozen stays in eval mode, so a frozen body computes
    exactly what it computed when pretrained. With ``BnStats.PRETRAINED`` the norm layers of
    trainable stages stay in eval mode too: their running statistics never move while their
    affine weights learn (the usual advice for small datasets, whose batch statistics are noisy
    and far from ImageNet's); with ``BnStats.ADAPT`` they update them on the new data. Norm layers
    without affine parameters follow the model's mode. The training loop calls this instead of
    ``model.train()``.

    Returns:
        The model.
    """
    model.train()
    keep_all = BnStats(bn) is BnStats.PRETRAINED
    for module in model.modules():
        if isinstance(module, _NormBase):
            params = list(module.parameters(recurse=False))
            frozen = params and not any(p.requires_grad for p in params)
            if keep_all or frozen:
                module.eval()
    return model


def _stage_index(model: nn.Module, spec: BackboneSpec) -> dict[str, int]:
    """Map body parameter names to their stage index (input-first)."""
    index = {name: i for i, stage in enumerate(spec.stages) for name in stage}
    head = head_parameter_names(model, spec)
    missing = [n for n, _ in model.named_parameters() if n not in index and n not in head]
    if missing:
        logger.warning(
            "%d parameters of %s are in no declared stage (e.g. %s); they get the input-most "
            "stage's learning rate",
            len(missing),
            spec.name,
            missing[0],
        )
        index.update(dict.fromkeys(missing, 0))
    return index


def param_groups(
    model: nn.Module,
    spec: BackboneSpec,
    *,
    lr: float,
    backbone_lr_factor: float,
    layer_decay: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for the trainable parameters, head first.

    The head gets ``lr``. Body stage ``i`` gets ``lr * backbone_lr_factor * layer_decay**k`` where
    ``k = num_stages - 1 - i`` counts back from the last stage (discriminative learning rates).
    Biases and norm weights (tensors with ``ndim <= 1``) get no weight decay.

    Returns:
        Groups with keys ``name``, ``params``, ``lr`` and ``weight_decay``; empty groups are left
        out. Names are ``head``, ``stage{i}`` and the same with a ``/no_decay`` suffix.
    """
    head = head_parameter_names(model, spec)
    stage_of = _stage_index(model, spec)
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name in head:
            key, group_lr = "head", lr
        else:
            i = stage_of[name]
            key = f"stage{i}"
            group_lr = lr * backbone_lr_factor * layer_decay ** (spec.num_stages - 1 - i)
        no_decay = param.ndim <= 1
        if no_decay:
            key += "/no_decay"
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "lr": group_lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
            },
        )
        group["params"].append(param)
    if not groups:
        raise ModelError(f"{spec.name}: no trainable parameters; check the strategy settings.")
    return sorted(groups.values(), key=_group_order)


def _group_order(group: dict[str, Any]) -> tuple[int, int, str]:
    name = group["name"]
    if name.startswith("head"):
        return (0, 0, name)
    return (1, -int(name.split("/")[0].removeprefix("stage")), name)
