"""The ``timm:`` source: any timm architecture, weights through timm's own (HF hub) loading."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

from headstart.errors import ModelError
from headstart.preprocessing import INTERPOLATIONS, PreprocessSpec
from headstart.zoo._common import (
    check_contract,
    ensure_online,
    imagenet_categories,
    offline_error,
)
from headstart.zoo.local import apply_weights_file
from headstart.zoo.spec import BackboneSpec

__all__ = [
    "classifier_path",
    "create_timm",
    "hf_cache_dir",
    "list_timm",
    "resolve_timm",
    "timm_categories",
    "timm_preprocessing",
    "timm_stages",
]

logger = logging.getLogger(__name__)

_HF_FILES = ("model.safetensors", "pytorch_model.bin")
_TINY_TRAILING_GROUP = (
    0.01  # trailing groups below this share of body parameters join the stage before
)


def list_timm(*, pretrained_tags: bool = True) -> list[str]:
    """Return timm architectures, plus ``arch.tag`` names with pretrained weights."""
    import timm

    names = set(timm.list_models())
    if pretrained_tags:
        names.update(timm.list_models(pretrained=True))
    return sorted(names)


def resolve_timm(arch_tag: str) -> str | None:
    """Return ``arch_tag`` if timm knows the architecture (and the tag, if any), else ``None``."""
    import timm

    arch, _, tag = arch_tag.partition(".")
    if not timm.is_model(arch):
        return None
    if tag and arch_tag not in set(timm.list_models(pretrained=True)):
        return None
    return arch_tag


def hf_cache_dir() -> Path:
    """Return the Hugging Face hub cache folder as huggingface_hub computes it from the env."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def create_timm(
    arch_tag: str, *, pretrained: bool, weights_file: str | Path | None = None, name: str = ""
) -> tuple[nn.Module, BackboneSpec]:
    """Build a timm model with its original head and describe it.

    Args:
        arch_tag: ``arch`` or ``arch.tag`` as timm names it.
        pretrained: Load timm's pretrained weights (from the HF cache, else downloaded).
        weights_file: Local state dict to load instead of timm's weights.
        name: Canonical name for messages and the spec (defaults to ``timm:arch_tag``).
    """
    import timm

    name = name or f"timm:{arch_tag}"
    if pretrained and weights_file is None:
        model = _create_pretrained(arch_tag, name)
    else:
        model = timm.create_model(arch_tag, pretrained=False)
    classifier = classifier_path(model, name)
    if weights_file is not None:
        apply_weights_file(model, weights_file, classifier=classifier)
    loaded = pretrained or weights_file is not None
    return model, timm_spec(model, name=name, source="timm", classifier=classifier, loaded=loaded)


def timm_spec(
    model: nn.Module, *, name: str, source: str, classifier: str, loaded: bool
) -> BackboneSpec:
    """Describe a timm-built model (also used by the bundled source)."""
    stages = timm_stages(model, classifier, name)
    num_features = check_contract(model, name, classifier, stages)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    out_features = int(model.get_submodule(classifier).out_features)  # type: ignore[arg-type]
    return BackboneSpec(
        name=name,
        source=source,
        arch=str(cfg.get("architecture") or type(model).__name__),
        preprocessing=timm_preprocessing(model),
        num_features=num_features,
        classifier=classifier,
        stages=stages,
        categories=timm_categories(model, out_features) if loaded else (),
        license=str(cfg.get("license") or "unknown"),
        pretrained=loaded,
        fixed_input_size=bool(cfg.get("fixed_input_size", False)),
    )


def _create_pretrained(arch_tag: str, name: str) -> nn.Module:
    """Create with pretrained weights: from the local cache if present, else download."""
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch_tag)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tags = ", ".join(timm.list_models(arch_tag.split(".")[0], pretrained=True)[:5]) or "none"
        raise ModelError(
            f"{name} has no pretrained weights in timm (tags with weights: {tags}); pick a tagged "
            "name, use --weights FILE, or pass pretrained=False."
        )
    if cfg.hf_hub_id:
        hint = f"Hugging Face cache {hf_cache_dir()}, set by HF_HOME or HF_HUB_CACHE"
    else:
        hint = f"torch hub cache {_torch_checkpoints()}, set by TORCH_HOME"
    cached = _cached_file(cfg)
    try:
        if cached is not None:
            logger.info("%s: loading weights from the cache %s", name, cached)
            return timm.create_model(
                arch_tag, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}
            )
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        ensure_online(
            endpoint if cfg.hf_hub_id else str(cfg.url or ""),
            name,
            hint,
            offline_vars=("HF_HUB_OFFLINE",),
        )
        return timm.create_model(arch_tag, pretrained=True)
    except ModelError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise offline_error(name, f"download or load failed ({reason})", hint) from None


def _cached_file(cfg: Any) -> Path | None:
    """Return the local copy of the weights described by a timm ``PretrainedCfg``, if any."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        repo, _, revision = hub_id.partition("@")
        files = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else _HF_FILES
        for filename in files:
            found = try_to_load_from_cache(
                repo, filename, cache_dir=hf_cache_dir(), revision=revision or None
            )
            if isinstance(found, str):
                return Path(found)
    url = getattr(cfg, "url", None)
    if url:
        local = _torch_checkpoints() / os.path.basename(url)
        if local.is_file():
            return local
    return None


def _torch_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def classifier_path(model: nn.Module, name: str) -> str:
    """Return the dotted path of the model's final linear layer, from its pretrained config."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    path = cfg.get("classifier")
    if not isinstance(path, str):
        raise ModelError(
            f"{name} has {'several heads' if path else 'no declared head'} ({path!r}); headstart "
            "needs one linear classifier. Pick another architecture or tag."
        )
    head = model.get_submodule(path)
    if not isinstance(head, nn.Linear) and getattr(model, "num_classes", None) == 0:
        logger.warning("%s has no classifier; adding a random 1000-class linear head", name)
        model.reset_classifier(1000)  # type: ignore[operator]
    return path


def timm_preprocessing(model: nn.Module) -> PreprocessSpec:
    """Return the preprocessing timm resolves for the model's pretrained config."""
    from timm.data import resolve_data_config

    data = resolve_data_config({}, model=model)
    _, height, width = data["input_size"]
    if height != width:
        logger.info("non-square input %sx%s; using the larger side", height, width)
    interpolation = str(data.get("interpolation", "bicubic"))
    if interpolation not in INTERPOLATIONS:
        logger.info("interpolation %r not supported; using bicubic", interpolation)
        interpolation = "bicubic"
    return PreprocessSpec(
        input_size=int(max(height, width)),
        mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        interpolation=interpolation,
        crop_pct=float(data.get("crop_pct", 0.875)),
    )


def timm_categories(model: nn.Module, num_classes: int) -> tuple[str, ...]:
    """Return the class names of an ImageNet-family head, or ``()`` if unknown."""
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if not subset:
        return ()
    names = imagenet_categories(subset)
    return names if len(names) == num_classes else ()


def timm_stages(model: nn.Module, classifier: str, name: str) -> tuple[tuple[str, ...], ...]:
    """Group the body's parameters input-first from timm's coarse ``group_matcher``.

    Classifier parameters are removed; trailing groups holding under 1% of the body's parameters
    (final norms, pooling) join the stage before them. Models without a group matcher fall back
    to one stage per top-level child (logged).
    """
    from timm.models import group_parameters

    head = {f"{classifier}.{n}" for n, _ in model.get_submodule(classifier).named_parameters()}
    try:
        groups = group_parameters(model, model.group_matcher(coarse=True))  # type: ignore[operator]
        raw = [tuple(p for p in params if p not in head) for _, params in sorted(groups.items())]
    except (AttributeError, NotImplementedError, TypeError):
        logger.warning("%s has no group_matcher; inferring stages from top-level children", name)
        raw = [
            tuple(f"{child}.{p}" for p, _ in module.named_parameters())
            for child, module in model.named_children()
        ]
        raw = [tuple(p for p in group if p not in head) for group in raw]
    return _merge_tiny_tail(model, [g for g in raw if g])


def _merge_tiny_tail(
    model: nn.Module, groups: list[tuple[str, ...]]
) -> tuple[tuple[str, ...], ...]:
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    total = sum(sizes[n] for g in groups for n in g) or 1
    while len(groups) > 1 and sum(sizes[n] for n in groups[-1]) < _TINY_TRAILING_GROUP * total:
        last = groups.pop()
        groups[-1] = groups[-1] + last
    return tuple(groups)
