"""Helpers shared by the zoo sources: stage grouping, contract checks, categories, offline."""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlparse

from torch import nn

from headstart.errors import ModelError

__all__ = [
    "OFFLINE_ALTERNATIVES",
    "check_contract",
    "ensure_online",
    "imagenet_categories",
    "offline_error",
    "stages_from_prefixes",
]

logger = logging.getLogger(__name__)

OFFLINE_ALTERNATIVES = (
    "bundled:efficientnet_lite0/1/2 (weights ship with headstart), --weights FILE (a local "
    "state dict)"
)
_PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def stages_from_prefixes(
    model: nn.Module, groups: Sequence[Sequence[str]]
) -> tuple[tuple[str, ...], ...]:
    """Group the model's parameter names by module prefix, one tuple per stage, input-first.

    Args:
        model: The network.
        groups: For each stage, the dotted module paths whose parameters it holds.

    Returns:
        Parameter names per stage, in the model's parameter order; empty stages are dropped.
    """
    names = [name for name, _ in model.named_parameters()]
    stages = []
    for prefixes in groups:
        stage = tuple(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))
        if stage:
            stages.append(stage)
    return tuple(stages)


def check_contract(
    model: nn.Module, name: str, classifier: str, stages: tuple[tuple[str, ...], ...]
) -> int:
    """Check that ``classifier`` is an ``nn.Linear`` and stages + head cover every parameter once.

    Args:
        model: The network.
        name: Model name used in error messages.
        classifier: Dotted path of the final linear layer.
        stages: Parameter names of the body per stage.

    Returns:
        The classifier's ``in_features`` (the spec's ``num_features``).

    Raises:
        ModelError: If the head is not linear or the stage table does not match the model.
    """
    try:
        head = model.get_submodule(classifier)
    except AttributeError as exc:
        raise ModelError(f"{name}: no classifier module {classifier!r} in the model.") from exc
    if not isinstance(head, nn.Linear):
        raise ModelError(
            f"{name}: classifier {classifier!r} is a {type(head).__name__}, not nn.Linear; "
            "headstart cannot replace this head. Pick another architecture (`headstart models`)."
        )
    head_params = [f"{classifier}.{n}" for n, _ in head.named_parameters()]
    listed = [n for stage in stages for n in stage] + head_params
    actual = [n for n, _ in model.named_parameters()]
    if len(listed) != len(set(listed)) or set(listed) != set(actual):
        missing = sorted(set(actual) - set(listed))[:3]
        extra = sorted(set(listed) - set(actual))[:3]
        raise ModelError(
            f"{name}: stage table does not cover the parameters exactly once (uncovered: "
            f"{missing}, unknown or repeated: {extra}); please report this as a headstart bug."
        )
    return head.in_features


@functools.lru_cache(maxsize=4)
def imagenet_categories(subset: str = "imagenet-1k") -> tuple[str, ...]:
    """Return human-readable ImageNet class names in index order (e.g. ``"Egyptian cat"``).

    Uses the first synonym of each WordNet description that timm ships offline; the few names
    that repeat (``crane``, ``maillot``) get their WordNet id appended to stay unique.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    short = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    counts: dict[str, int] = {}
    for s in short:
        counts[s] = counts.get(s, 0) + 1
    return tuple(
        s if counts[s] == 1 else f"{s} ({info.index_to_label_name(i)})" for i, s in enumerate(short)
    )


def offline_error(name: str, reason: str, cache_hint: str) -> ModelError:
    """Build the one-line error for weights that cannot be downloaded."""
    return ModelError(
        f"cannot get pretrained weights for {name}: {reason}. Offline alternatives: "
        f"{OFFLINE_ALTERNATIVES}, or pre-fill the cache ({cache_hint})."
    )


def _env_offline(extra_vars: Iterable[str] = ()) -> bool:
    flags = ("HEADSTART_OFFLINE", *extra_vars)
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in flags)


def ensure_online(
    url: str, name: str, cache_hint: str, *, offline_vars: Iterable[str] = ()
) -> None:
    """Fail fast, before a library retries for a minute, when ``url``'s host is unreachable.

    Skipped behind a proxy (the HTTP client knows better). ``HEADSTART_OFFLINE=1`` (or any of
    ``offline_vars``) forbids downloads outright.

    Raises:
        ModelError: One line naming the model, the reason and the offline alternatives.
    """
    if _env_offline(offline_vars):
        raise offline_error(name, "downloads are disabled by the environment", cache_hint)
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        logger.debug("probe of %s:%s failed: %s", host, port, exc)
        raise offline_error(name, f"no network ({host} unreachable: {exc})", cache_hint) from None
