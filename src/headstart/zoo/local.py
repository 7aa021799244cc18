"""Local weight files: safe loading (never unpickles objects) and strict matching to a model.

Supported: ``.safetensors`` and ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.bin`` / ``.ckpt`` read
with ``torch.load(weights_only=True)`` (timm's training checkpoints also carry their
``argparse.Namespace`` of arguments, which is allowed: it holds only plain values). The file may
hold a raw state dict or a dict with a ``"state_dict"`` or ``"model"`` entry (timm and Lightning
checkpoints); a ``module.`` prefix (DistributedDataParallel) is removed, and so is a prefix the
model's own names lack that every key shares (Lightning's ``model.``, ``torch.compile``'s
``_orig_mod.``).

If the file's classifier has another number of classes than the model's head (a model fine-tuned
on other classes), the head is rebuilt as an ``nn.Linear`` with the file's shape before loading.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from headstart.errors import ModelError

__all__ = ["SUPPORTED_SUFFIXES", "apply_weights_file", "load_weights_file", "weights_suffix"]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".safetensors", ".pth", ".pth.tar", ".pt", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
"""Prefixes that wrappers put before every key (DDP, a LightningModule's ``self.model``,
``torch.compile``); one is removed only when the model's own names lack it."""
_SAFE_CLASSES = [argparse.Namespace]
"""Classes besides tensors and containers that a weights file may hold (timm's saved args)."""


def weights_suffix(path: str | Path) -> str:
    """The file type of ``path`` as ``load_weights_file`` reads it (``.pth.tar`` counts as one)."""
    name = Path(path).name.lower()
    return ".pth.tar" if name.endswith(".pth.tar") else Path(name).suffix


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` without unpickling arbitrary objects.

    Raises:
        ModelError: If the file is missing, of an unknown type, corrupt, unsafe or not a
            state dict; the message names the file.
    """
    path = Path(path)
    suffix = weights_suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise ModelError(
            f"weights file {path}: unsupported type {suffix or '(none)'}; use one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}."
        )
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; check the path.")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path), device="cpu")
        else:
            with torch.serialization.safe_globals(_SAFE_CLASSES):
                data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(
            f"weights file {path} holds pickled Python objects besides tensors, which headstart "
            "never loads; re-save only `model.state_dict()`, preferably with safetensors."
        ) from None
    except Exception as exc:  # every other reader error means the same to the user
        reason = (str(exc).strip().split(". ") or [""])[0].splitlines()[0][:160]
        raise ModelError(
            f"weights file {path} cannot be read ({type(exc).__name__}: {reason}); it may be "
            "truncated or corrupt. Copy or save it again."
        ) from None
    return _unwrap(data, path)


def _unwrap(data: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data:
        raise ModelError(f"weights file {path} does not hold a state dict (name -> tensor).")
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(
            f"weights file {path} holds non-tensor entries (e.g. {bad[0]!r}); save only "
            "`model.state_dict()`."
        )
    if all(k.startswith("module.") for k in data):
        data = {k[len("module.") :]: v for k, v in data.items()}
    return data


def apply_weights_file(model: nn.Module, path: str | Path, *, classifier: str) -> None:
    """Load the weights in ``path`` into ``model`` strictly, adapting the head's class count.

    Args:
        model: The network, built without pretrained weights.
        path: The weights file.
        classifier: Dotted path of the model's final ``nn.Linear``.

    Raises:
        ModelError: One line naming the file and the missing, unexpected or mis-shaped tensors.
    """
    expected = model.state_dict()
    state = _strip_wrapper_prefix(load_weights_file(path), expected, Path(path))
    _adapt_head(model, state, classifier, Path(path))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
        if shapes:
            parts.append(f"{len(shapes)} wrong shapes (e.g. {shapes[0]})")
        raise ModelError(
            f"weights file {path} does not match the architecture: {'; '.join(parts)}. "
            "Check that the file was saved from this architecture."
        )
    model.load_state_dict(state, strict=False)
    logger.info("loaded %d tensors from %s", len(state), path)


def _strip_wrapper_prefix(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``model.``, ``_orig_mod.``) shared by every key of ``state`` and
    by no name of the model, one after another (``model._orig_mod.conv1.weight``)."""
    while (prefix := _wrapper_prefix(state, expected)) is not None:
        logger.info("%s: removing the prefix %r from every key", path, prefix)
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _wrapper_prefix(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> str | None:
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state) and not any(
            k.startswith(prefix) for k in expected
        ):
            return prefix
    return None


def _adapt_head(
    model: nn.Module, state: dict[str, torch.Tensor], classifier: str, path: Path
) -> None:
    """Rebuild the classifier with the file's class count when only that differs."""
    weight = state.get(f"{classifier}.weight")
    head = model.get_submodule(classifier)
    if weight is None or not isinstance(head, nn.Linear) or weight.ndim != 2:
        return
    classes, features = weight.shape
    if features != head.in_features or classes == head.out_features:
        return
    logger.info("%s: classifier has %d classes; rebuilding the head to match", path, classes)
    new_head = nn.Linear(features, classes, bias=f"{classifier}.bias" in state)
    parent_name, _, child = classifier.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new_head)
    if hasattr(model, "num_classes"):
        model.num_classes = classes  # type: ignore[assignment]
