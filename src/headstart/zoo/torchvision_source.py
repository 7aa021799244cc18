"""The ``tv:`` source: torchvision classification models with their weights enums.

Each supported architecture is declared in ``FAMILIES``: where its final linear layer is and how
its body splits into stages (input-first). Weights are fetched with torchvision's own
``Weights.get_state_dict`` (torch hub cache, ``$TORCH_HOME/hub/checkpoints``), always read with
``weights_only=True``.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from headstart.errors import ModelError, closest
from headstart.preprocessing import PreprocessSpec
from headstart.zoo._common import (
    check_contract,
    ensure_online,
    offline_error,
    stages_from_prefixes,
)
from headstart.zoo.local import apply_weights_file
from headstart.zoo.spec import BackboneSpec

__all__ = ["FAMILIES", "create_torchvision", "list_torchvision", "resolve_torchvision"]

logger = logging.getLogger(__name__)

Groups = list[list[str]]


@dataclass(frozen=True)
class _Family:
    """How one torchvision architecture family is cut into body stages and head."""

    classifier: str
    groups: Callable[[nn.Module], Groups]
    pretrained_kwargs: dict[str, Any] = field(default_factory=dict)
    random_kwargs: dict[str, Any] = field(default_factory=dict)
    fix_state: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    size_kwarg: str | None = None
    """Builder argument that fixes the input size (ViT's ``image_size``), set from the weights."""
    fixed_input_size: bool = False


def _static(groups: Groups) -> Callable[[nn.Module], Groups]:
    return lambda model: groups


def _feature_ranges(
    *ranges: tuple[int, int], extra: Groups | None = None
) -> Callable[[nn.Module], Groups]:
    """Stages made of ``features.i`` for i in each inclusive range, then ``extra`` stages."""
    groups = [[f"features.{i}" for i in range(a, b + 1)] for a, b in ranges]
    return _static(groups + [list(g) for g in extra or []])


def _each_feature(model: nn.Module) -> Groups:
    """One stage per child of ``model.features`` (EfficientNet: stem, stages, final conv)."""
    return [[f"features.{name}"] for name, _ in model.features.named_children()]  # type: ignore[union-attr]


def _vgg_groups(model: nn.Module) -> Groups:
    """VGG: one stage per conv block (each ends at a MaxPool), then the two hidden FC layers."""
    groups: Groups = [[]]
    for name, module in model.features.named_children():  # type: ignore[union-attr]
        groups[-1].append(f"features.{name}")
        if isinstance(module, nn.MaxPool2d):
            groups.append([])
    return [g for g in groups if g] + [["classifier.0", "classifier.3"]]


_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fix_densenet(state: dict[str, Any]) -> dict[str, Any]:
    """Rename old DenseNet keys (``norm.1`` -> ``norm1``), as torchvision's own loader does."""
    out = {}
    for key, value in state.items():
        match = _DENSE_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def _vit_groups(model: nn.Module) -> Groups:
    """ViT: patch embedding with class token and position embedding, then the encoder blocks in
    four near-equal stages (the final norm with the last)."""
    blocks = [f"encoder.layers.{name}" for name, _ in model.encoder.layers.named_children()]  # type: ignore[union-attr]
    bounds = [round(i * len(blocks) / 4) for i in range(5)]
    groups = [blocks[a:b] for a, b in itertools.pairwise(bounds)]
    groups[-1] = groups[-1] + ["encoder.ln"]
    return [["class_token", "conv_proj", "encoder.pos_embedding"], *groups]


_RESNET = _Family("fc", _static([["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]))
_VGG = _Family("classifier.6", _vgg_groups)
_DENSENET = _Family(
    "classifier",
    _static(
        [["features.conv0", "features.norm0"]]
        + [[f"features.denseblock{i}", f"features.transition{i}"] for i in (1, 2, 3)]
        + [["features.denseblock4", "features.norm5"]]
    ),
    fix_state=_fix_densenet,
)
_EFFICIENTNET = _Family("classifier.1", _each_feature)
_CONVNEXT = _Family(
    "classifier.2",
    _static(
        [["features.0", "features.1"], ["features.2", "features.3"], ["features.4", "features.5"]]
        + [["features.6", "features.7", "classifier.0"]]
    ),
)
_INCEPTION = _Family(
    "fc",
    _static(
        [
            ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"],
            ["Mixed_5b", "Mixed_5c", "Mixed_5d"],
            ["Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"],
            ["Mixed_7a", "Mixed_7b", "Mixed_7c"],
        ]
    ),
    pretrained_kwargs={"transform_input": True, "aux_logits": True, "init_weights": False},
    random_kwargs={"aux_logits": False, "init_weights": False},
)

_SWIN = _Family(  # patch embedding + stage 1, then each patch merging with the stage after it
    "head",
    _static(
        [["features.0", "features.1"], ["features.2", "features.3"], ["features.4", "features.5"]]
        + [["features.6", "features.7", "norm"]]
    ),
)
_VIT = _Family("heads.head", _vit_groups, size_kwarg="image_size", fixed_input_size=True)
_REGNET = _Family("fc", _static([["stem"]] + [[f"trunk_output.block{i}"] for i in range(1, 5)]))
_MAXVIT = _Family(  # the head's hidden layer (norm, linear, tanh) trains with the last stage
    "classifier.5",
    _static(
        [["stem"], ["blocks.0"], ["blocks.1"], ["blocks.2"]]
        + [["blocks.3", "classifier.2", "classifier.3"]]
    ),
    fixed_input_size=True,
)
_REGNETS = ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")

FAMILIES: dict[str, _Family] = {
    **{a: _RESNET for a in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{a: _RESNET for a in ("resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2")},
    **{f"vgg{d}{bn}": _VGG for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"densenet{d}": _DENSENET for d in (121, 161, 169, 201)},
    "mobilenet_v2": _Family(
        "classifier.1", _feature_ranges((0, 1), (2, 3), (4, 6), (7, 13), (14, 18))
    ),
    "mobilenet_v3_large": _Family(
        "classifier.3",
        _feature_ranges((0, 1), (2, 3), (4, 6), (7, 12), (13, 16), extra=[["classifier.0"]]),
    ),
    "mobilenet_v3_small": _Family(
        "classifier.3",
        _feature_ranges((0, 0), (1, 1), (2, 3), (4, 8), (9, 12), extra=[["classifier.0"]]),
    ),
    **{f"efficientnet_b{i}": _EFFICIENTNET for i in range(8)},
    **{f"efficientnet_v2_{s}": _EFFICIENTNET for s in ("s", "m", "l")},
    "inception_v3": _INCEPTION,
    **{f"convnext_{s}": _CONVNEXT for s in ("tiny", "small", "base", "large")},
    **{f"vit_{s}": _VIT for s in ("b_16", "b_32", "l_16", "l_32", "h_14")},
    **{f"swin{v}_{s}": _SWIN for v in ("", "_v2") for s in ("t", "s", "b")},
    **{f"regnet_{k}_{s}": _REGNET for k in ("x", "y") for s in _REGNETS},
    "regnet_y_128gf": _REGNET,
    "maxvit_t": _MAXVIT,
}


def list_torchvision() -> list[str]:
    """Return every supported ``arch`` and ``arch.WEIGHTS`` name (without the ``tv:`` prefix)."""
    import torchvision

    names = []
    for arch in sorted(set(FAMILIES) & set(torchvision.models.list_models())):
        names.append(arch)
        names.extend(f"{arch}.{w.name}" for w in torchvision.models.get_model_weights(arch))
    return names


def resolve_torchvision(arch_tag: str) -> str | None:
    """Return ``arch.WEIGHTS`` (``DEFAULT`` or no tag resolved), or ``None`` if the arch is unknown.

    Raises:
        ModelError: If the architecture is known but the weights tag is not.
    """
    import torchvision

    arch, _, tag = arch_tag.partition(".")
    if arch not in FAMILIES or arch not in torchvision.models.list_models():
        return None
    enum = torchvision.models.get_model_weights(arch)
    if not tag or tag == "DEFAULT":
        return f"{arch}.{enum.DEFAULT.name}"
    if tag not in enum.__members__:
        choices = [w.name for w in enum]
        raise ModelError(
            f"tv:{arch} has no weights {tag!r}; use one of {', '.join(choices)}."
            + closest(tag, choices)
        )
    return f"{arch}.{tag}"


def create_torchvision(
    arch_tag: str, *, pretrained: bool, weights_file: str | Path | None = None
) -> tuple[nn.Module, BackboneSpec]:
    """Build a torchvision model with its original head and describe it.

    Args:
        arch_tag: Canonical ``arch.WEIGHTS`` (see ``resolve_torchvision``).
        pretrained: Load the weights (from the torch hub cache, else downloaded).
        weights_file: Local state dict to load instead of the published weights.
    """
    import torchvision

    arch, _, tag = arch_tag.partition(".")
    name = f"tv:{arch_tag}"
    family = FAMILIES[arch]
    weights = torchvision.models.get_model_weights(arch)[tag]
    from_hub = pretrained and weights_file is None
    kwargs = dict(family.pretrained_kwargs if from_hub else family.random_kwargs)
    preprocessing = _preprocessing(weights)
    if family.size_kwarg:  # the weights' input size, as torchvision's own builder sets it
        kwargs[family.size_kwarg] = preprocessing.input_size
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    if from_hub:
        state = _fetch_state_dict(weights, name)
        model.load_state_dict(family.fix_state(state) if family.fix_state else state)
    if arch == "inception_v3":
        model.aux_logits, model.AuxLogits = False, None  # type: ignore[assignment]
    if weights_file is not None:
        apply_weights_file(model, weights_file, classifier=family.classifier)
    stages = stages_from_prefixes(model, family.groups(model))
    num_features = check_contract(model, name, family.classifier, stages)
    categories = tuple(weights.meta.get("categories") or ())
    out_features = model.get_submodule(family.classifier).out_features
    loaded = pretrained or weights_file is not None
    spec = BackboneSpec(
        name=name,
        source="tv",
        arch=arch,
        preprocessing=preprocessing,
        num_features=num_features,
        classifier=family.classifier,
        stages=stages,
        categories=categories if loaded and len(categories) == out_features else (),
        license="unknown",
        pretrained=loaded,
        fixed_input_size=family.fixed_input_size,
    )
    return model, spec


def _fetch_state_dict(weights: Any, name: str) -> dict[str, Any]:
    """Return the weights' state dict from the torch hub cache, downloading it when online."""
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    hint = f"put {cached.name} in {cached.parent} ($TORCH_HOME/hub/checkpoints)"
    if not cached.is_file():
        ensure_online(weights.url, name, hint)
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # network, hash or unpickling errors all end here
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if cached.is_file():
            raise ModelError(
                f"{name}: cached weights {cached} cannot be loaded ({reason}); delete the file "
                "and retry, or use --weights FILE."
            ) from None
        raise offline_error(name, f"download failed ({reason})", hint) from None


def _preprocessing(weights: Any) -> PreprocessSpec:
    """Return the evaluation preprocessing declared by a torchvision weights enum member."""
    transform = weights.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return PreprocessSpec(
        input_size=crop,
        mean=tuple(float(v) for v in transform.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in transform.std),  # type: ignore[arg-type]
        interpolation=str(transform.interpolation.value),
        crop_pct=crop / resize,
    )
