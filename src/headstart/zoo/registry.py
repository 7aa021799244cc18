"""Model names -> sources: ``resolve_name``, ``list_backbones`` and ``create_backbone``.

Names are ``source:arch[.tag]`` with sources ``bundled``, ``timm`` and ``tv`` (torchvision). A bare
name goes to the bundled set first, then timm.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.errors import ModelError, closest
from headstart.zoo.spec import BackboneSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Source", "create_backbone", "list_backbones", "register_source", "resolve_name"]

logger = logging.getLogger(__name__)

Creator = Callable[..., "tuple[nn.Module, BackboneSpec]"]


@dataclass(frozen=True)
class Source:
    """A family of backbones reachable under one name prefix.

    Attributes:
        prefix: The ``source`` part of ``source:arch[.tag]``.
        resolve: Maps ``arch[.tag]`` to its canonical form, or ``None`` if unknown.
        create: Builds ``(model, spec)`` from the canonical ``arch[.tag]``, with keyword
            arguments ``pretrained`` and ``weights_file``.
        names: Lists every ``arch[.tag]`` the source offers.
    """

    prefix: str
    resolve: Callable[[str], str | None]
    create: Creator
    names: Callable[[], list[str]]


_SOURCES: dict[str, Source] = {}
_BARE_ORDER = ("bundled", "timm")


def register_source(source: Source) -> None:
    """Add a source to the registry.

    Raises:
        ModelError: If a source with the same prefix is already registered.
    """
    if source.prefix in _SOURCES:
        raise ModelError(f"model source {source.prefix!r} is already registered.")
    _SOURCES[source.prefix] = source


def resolve_name(name: str) -> str:
    """Return the canonical ``source:arch[.tag]`` of a model name.

    Examples: ``efficientnet_lite0`` -> ``bundled:efficientnet_lite0``, ``resnet18`` ->
    ``timm:resnet18``, ``tv:resnet18`` -> ``tv:resnet18.IMAGENET1K_V1``.

    Raises:
        ModelError: If the name is unknown; the message lists the closest names.
    """
    text = name.strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _SOURCES:
        candidates = [prefix]
    elif sep:
        raise ModelError(
            f"unknown model source {prefix!r} in {name!r}; use one of "
            f"{', '.join(p + ':' for p in _SOURCES)}." + closest(prefix, _SOURCES)
        )
    else:
        candidates, rest = [p for p in _BARE_ORDER if p in _SOURCES], text
    for prefix in candidates:
        resolved = _SOURCES[prefix].resolve(rest) if rest else None
        if resolved is not None:
            return f"{prefix}:{resolved}"
    if sep:
        hint = closest(text, [f"{prefix}:{n}" for n in _SOURCES[prefix].names()])
    else:
        hint = closest(text, dict.fromkeys(n for p in _SOURCES for n in _SOURCES[p].names()))
    raise ModelError(f"unknown model {name!r}.{hint or ' See `headstart models` for the list.'}")


def list_backbones(pattern: str | None = None) -> list[str]:
    """Return all model names (``source:arch[.tag]``), optionally filtered by an fnmatch pattern.

    A pattern without ``:`` is matched against the part after the source too, so
    ``"convnext*"`` finds ``tv:convnext_tiny`` and ``timm:convnext_tiny.fb_in1k``.
    """
    names = _all_names()
    if pattern is None:
        return names
    if ":" in pattern:
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return [n for n in names if fnmatch.fnmatchcase(n.partition(":")[2], pattern)]


def create_backbone(
    name: str, *, pretrained: bool = True, weights_file: str | Path | None = None
) -> tuple[nn.Module, BackboneSpec]:
    """Build a backbone with its original classifier, in eval mode, and its spec.

    Args:
        name: Model name, e.g. ``bundled:efficientnet_lite0``, ``tv:resnet50``,
            ``timm:convnext_tiny.fb_in1k`` or a bare ``efficientnet_lite0``.
        pretrained: Load the published weights (the bundled ones need no network).
        weights_file: Local ``.safetensors`` / ``.pth`` state dict to load instead; its
            classifier may have another number of classes.

    Returns:
        The network (1000-class ImageNet head when pretrained) and its ``BackboneSpec``.

    Raises:
        ModelError: Unknown name, unusable weights file, or weights that cannot be downloaded.
    """
    canonical = resolve_name(name)
    prefix, _, arch_tag = canonical.partition(":")
    model, spec = _SOURCES[prefix].create(
        arch_tag, pretrained=pretrained, weights_file=weights_file
    )
    model.eval()
    logger.info(
        "created %s (pretrained=%s, %d stages)", spec.name, spec.pretrained, spec.num_stages
    )
    return model, spec


def _all_names() -> list[str]:
    return [f"{p}:{n}" for p, source in _SOURCES.items() for n in source.names()]


def _lazy(module: str, function: str) -> Callable[..., Any]:
    """Return a callable that imports ``module`` (torch, timm...) only when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    call.__name__ = function
    return call


def _resolve_bundled(arch_tag: str) -> str | None:
    from headstart.zoo.bundled import BUNDLED

    return arch_tag if arch_tag in BUNDLED else None


def _register_builtin_sources() -> None:
    """Register bundled, timm and torchvision; their modules are imported on first use."""
    table = (
        ("bundled", "headstart.zoo.bundled", "bundled"),
        ("timm", "headstart.zoo.timm_source", "timm"),
        ("tv", "headstart.zoo.torchvision_source", "torchvision"),
    )
    for prefix, module, word in table:
        resolve = _resolve_bundled if prefix == "bundled" else _lazy(module, f"resolve_{word}")
        names = _lazy(module, f"list_{word}")
        register_source(Source(prefix, resolve, _lazy(module, f"create_{word}"), names))


_register_builtin_sources()
