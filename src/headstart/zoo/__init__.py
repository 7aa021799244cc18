"""The model zoo: build pretrained backbones by name, with their preprocessing and stage split.

Importing this package does not import torch; building a model does.
"""

from headstart.zoo.registry import create_backbone, list_backbones, resolve_name
from headstart.zoo.spec import BackboneSpec

__all__ = ["BackboneSpec", "create_backbone", "list_backbones", "resolve_name"]
