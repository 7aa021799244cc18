"""Model names -> sources: ``resolve_name``, ``list_backbones`` and ``create_backbone``.

Names are ``source:arch[.tag]`` with sources ``bundled``, ``tv`` (torchvision; ``torchvision:`` is
an alias), ``timm`` and ``hf-hub`` (a timm model on the Hugging Face hub, ``hf-hub:owner/repo``). A
bare name goes to the bundled set first, then torchvision (what tutorials and Ultralytics mean by
``resnet50``), then timm.
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

__all__ = [
    "BARE_ORDER",
    "Source",
    "bare_matches",
    "create_backbone",
    "list_backbones",
    "register_source",
    "resolve_name",
]

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
BARE_ORDER = ("bundled", "tv", "timm")
"""The sources a name without ``source:`` tries, in order."""
_ALIASES = {"torchvision": "tv"}


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

    Examples: ``efficientnet_lite0`` -> ``bundled:efficientnet_lite0``, ``resnet18`` and
    ``torchvision:resnet18`` -> ``tv:resnet18.IMAGENET1K_V1``, ``resnet18.a1_in1k`` ->
    ``timm:resnet18.a1_in1k`` (torchvision has no such weights).

    Raises:
        ModelError: If the name is unknown; the message lists the closest names.
    """
    text = name.strip()
    prefix, sep, rest = text.partition(":")
    prefix = _ALIASES.get(prefix, prefix)
    if sep and prefix in _SOURCES:
        candidates = [prefix]
    elif sep:
        choices = [*_SOURCES, *_ALIASES]
        raise ModelError(
            f"unknown model source {prefix!r} in {name!r}; use one of "
            f"{', '.join(p + ':' for p in choices)}." + closest(prefix, choices)
        )
    else:
        candidates, rest = [p for p in BARE_ORDER if p in _SOURCES], text
    refusals: list[ModelError] = []
    for prefix in candidates:
        try:
            resolved = _SOURCES[prefix].resolve(rest) if rest else None
        except ModelError as exc:  # a known arch with unknown weights: a bare name tries on
            if sep:
                raise
            refusals.append(exc)
            continue
        if resolved is not None:
            return f"{prefix}:{resolved}"
    if refusals:
        raise refusals[0]
    if sep:
        hint = closest(text, [f"{prefix}:{n}" for n in _SOURCES[prefix].names()])
    else:
        hint = closest(text, dict.fromkeys(n for p in _SOURCES for n in _SOURCES[p].names()))
    raise ModelError(f"unknown model {name!r}.{hint or ' See `headstart models` for the list.'}")


def bare_matches(name: str) -> list[str]:
    """The canonical names a bare ``name`` has, in the order a bare name tries the sources
    (bundled, torchvision, timm): the first is what ``resolve_name`` gives; ``[]`` if none."""
    found = []
    for prefix in (p for p in BARE_ORDER if p in _SOURCES):
        try:
            resolved = _SOURCES[prefix].resolve(name.strip())
        except ModelError:
            continue
        if resolved is not None:
            found.append(f"{prefix}:{resolved}")
    return found


def list_backbones(pattern: str | None = None) -> list[str]:
    """Return all model names (``source:arch[.tag]``), optionally filtered by an fnmatch pattern.

    A pattern without ``:`` is matched against the part after the source too, so
    ``"convnext*"`` finds ``tv:convnext_tiny`` and ``timm:convnext_tiny.fb_in1k``;
    ``"torchvision:*"`` means ``"tv:*"``.
    """
    if pattern is None:
        return _all_names()
    if ":" in pattern:  # only the sources the pattern can match are asked (and imported)
        prefix, _, rest = pattern.partition(":")
        pattern = f"{_ALIASES.get(prefix, prefix)}:{rest}"
        wanted = [p for p in _SOURCES if fnmatch.fnmatchcase(p, pattern.partition(":")[0])]
        return [n for n in _all_names(wanted) if fnmatch.fnmatchcase(n, pattern)]
    return [n for n in _all_names() if fnmatch.fnmatchcase(n.partition(":")[2], pattern)]


def create_backbone(
    name: str, *, pretrained: bool = True, weights_file: str | Path | None = None
) -> tuple[nn.Module, BackboneSpec]:
    """Build a backbone with its original classifier, in eval mode, and its spec.

    Args:
        name: Model name, e.g. ``bundled:efficientnet_lite0``, ``tv:resnet50``,
            ``timm:convnext_tiny.fb_in1k``, ``hf-hub:timm/resnet18.a1_in1k`` or a bare
            ``efficientnet_lite0``.
        pretrained: Load the published weights (the bundled ones need no network).
        weights_file: Local ``.safetensors`` / ``.pth`` / ``.pth.tar`` / ``.ckpt`` state dict
            to load instead; its
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


def _all_names(prefixes: list[str] | None = None) -> list[str]:
    chosen = list(_SOURCES) if prefixes is None else prefixes
    return [f"{p}:{n}" for p in chosen for n in _SOURCES[p].names()]


def _lazy(module: str, function: str) -> Callable[..., Any]:
    """Return a callable that imports ``module`` (torch, timm...) only when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    call.__name__ = function
    return call


def _resolve_bundled(arch_tag: str) -> str | None:
    from headstart.zoo.bundled_names import BUNDLED

    return arch_tag if arch_tag in BUNDLED else None


def _register_builtin_sources() -> None:
    """Register bundled, timm, torchvision and hf-hub; their modules are imported on first use."""
    table = (
        ("bundled", "headstart.zoo.bundled", "bundled"),
        ("timm", "headstart.zoo.timm_source", "timm"),
        ("tv", "headstart.zoo.torchvision_source", "torchvision"),
        ("hf-hub", "headstart.zoo.hf_hub", "hf_hub"),
    )
    for prefix, module, word in table:
        resolve = _resolve_bundled if prefix == "bundled" else _lazy(module, f"resolve_{word}")
        listing = "headstart.zoo.bundled_names" if prefix == "bundled" else module
        names = _lazy(listing, f"list_{word}")
        register_source(Source(prefix, resolve, _lazy(module, f"create_{word}"), names))


_register_builtin_sources()
