"""The ``hf-hub:`` source: a timm model published on the Hugging Face hub, ``hf-hub:owner/repo``.

timm reads the repository's ``config.json`` (architecture, preprocessing, classes) and weights.
When both are already in the Hugging Face cache, the model is built from that snapshot folder
(timm's ``local-dir:``) without touching the network; otherwise the hub must be reachable, and
offline the error says so in one line. Without pretrained weights the ``config.json`` is still
needed: it names the architecture.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from torch import nn

from headstart.errors import ModelError
from headstart.zoo._common import ensure_online, offline_error
from headstart.zoo.local import apply_weights_file
from headstart.zoo.spec import BackboneSpec
from headstart.zoo.timm_source import classifier_path, hf_cache_dir, timm_spec

__all__ = ["create_hf_hub", "list_hf_hub", "resolve_hf_hub"]

logger = logging.getLogger(__name__)

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def list_hf_hub() -> list[str]:
    """The hub is not listed offline: no names (``headstart models list`` shows none)."""
    return []


def resolve_hf_hub(repo: str) -> str | None:
    """Return ``owner/repo[@revision]`` unchanged when it is one.

    Raises:
        ModelError: The text after ``hf-hub:`` is not ``owner/repo``.
    """
    if _REPO.match(repo):
        return repo
    raise ModelError(
        f"hf-hub:{repo} is not a Hugging Face repository name; write hf-hub:<owner>/<repo>, e.g. "
        "hf-hub:timm/resnet18.a1_in1k."
    )


def create_hf_hub(
    repo: str, *, pretrained: bool, weights_file: str | Path | None = None
) -> tuple[nn.Module, BackboneSpec]:
    """Build the timm model of a hub repository with its original head and describe it.

    Args:
        repo: ``owner/repo[@revision]``.
        pretrained: Load the repository's weights.
        weights_file: Local state dict to load instead of the repository's weights.
    """
    name = f"hf-hub:{repo}"
    want_weights = pretrained and weights_file is None
    model = _create(repo, name, pretrained=want_weights)
    classifier = classifier_path(model, name)
    if weights_file is not None:
        apply_weights_file(model, weights_file, classifier=classifier)
    loaded = pretrained or weights_file is not None
    return model, timm_spec(model, name=name, source="hf-hub", classifier=classifier, loaded=loaded)


def _create(repo: str, name: str, *, pretrained: bool) -> nn.Module:
    """``timm.create_model`` from the cached snapshot if it has all it needs, else from the hub."""
    import timm

    hint = f"Hugging Face cache {hf_cache_dir()}, set by HF_HOME or HF_HUB_CACHE"
    snapshot = cached_snapshot(repo, with_weights=pretrained)
    try:
        if snapshot is not None:
            logger.info("%s: building from the cached snapshot %s", name, snapshot)
            return timm.create_model(f"local-dir:{snapshot}", pretrained=pretrained)
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        ensure_online(endpoint, name, hint, offline_vars=("HF_HUB_OFFLINE",))
        return timm.create_model(name, pretrained=pretrained)
    except ModelError:
        raise
    except Exception as exc:  # hub, HTTP, JSON and timm errors all mean the same to the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise offline_error(name, f"download or load failed ({reason})", hint) from None


def cached_snapshot(repo: str, *, with_weights: bool) -> Path | None:
    """The cached snapshot folder of ``repo`` holding its ``config.json`` (and weights, if
    ``with_weights``), or None."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    found = try_to_load_from_cache(
        repo_id, "config.json", cache_dir=hf_cache_dir(), revision=revision or None
    )
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    if with_weights and not any((folder / f).is_file() for f in _WEIGHT_FILES):
        return None
    return folder
