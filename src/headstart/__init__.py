"""headstart: fine-tune pretrained image classifiers on your own images.

Public names are resolved lazily, so ``import headstart`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headstart import started as _started  # noqa: F401 - notes the time of the first import

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec",
    "ConfigError",
    "DataError",
    "HeadstartError",
    "ImageClassifier",
    "ModelError",
    "PreprocessSpec",
    "TrainConfig",
    "create_backbone",
    "list_backbones",
    "load_model",
]

_WHERE = {
    "BackboneSpec": "headstart.zoo.spec",
    "ConfigError": "headstart.errors",
    "DataError": "headstart.errors",
    "HeadstartError": "headstart.errors",
    "ModelError": "headstart.errors",
    "ImageClassifier": "headstart.classifier",
    "PreprocessSpec": "headstart.preprocessing",
    "TrainConfig": "headstart.config",
    "create_backbone": "headstart.zoo",
    "list_backbones": "headstart.zoo",
    "load_model": "headstart.inference.load",
}

if TYPE_CHECKING:
    from headstart.classifier import ImageClassifier
    from headstart.config import TrainConfig
    from headstart.errors import ConfigError, DataError, HeadstartError, ModelError
    from headstart.inference.load import load_model
    from headstart.preprocessing import PreprocessSpec
    from headstart.zoo import create_backbone, list_backbones
    from headstart.zoo.spec import BackboneSpec


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'headstart' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
