"""BackboneSpec: the discovered facts about a pretrained network (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from headstart.preprocessing import PreprocessSpec

__all__ = ["BackboneSpec"]


@dataclass(frozen=True)
class BackboneSpec:
    """What headstart knows about a backbone, declared per family rather than guessed.

    Attributes:
        name: Canonical model name, ``source:arch[.tag]`` (e.g. ``bundled:efficientnet_lite0``).
        source: ``bundled``, ``timm``, ``tv`` or ``hf-hub``.
        arch: Architecture name inside its source (e.g. ``tf_efficientnet_lite0``).
        preprocessing: Input size, mean, std, interpolation and crop fraction of the weights.
        num_features: Width of the features that enter the classifier.
        classifier: Dotted path of the final ``nn.Linear`` that ``replace_head`` swaps.
        stages: Parameter names of the body, grouped input-first into stages; together with the
            classifier's parameters they cover every parameter of the model exactly once.
        categories: Class names of the pretrained head (ImageNet), empty if unknown.
        license: Licence of the weights as stated by their publisher, or ``"unknown"``.
        pretrained: Whether pretrained weights were loaded.
        fixed_input_size: The network runs at ``preprocessing.input_size`` only (ViT-style
            position embeddings, MaxViT's window partitions); another image size fails.
    """

    name: str
    source: str
    arch: str
    preprocessing: PreprocessSpec
    num_features: int
    classifier: str
    stages: tuple[tuple[str, ...], ...]
    categories: tuple[str, ...] = field(default=(), repr=False)
    license: str = "unknown"
    pretrained: bool = True
    fixed_input_size: bool = False

    @property
    def num_stages(self) -> int:
        """Number of body stages available to ``--unfreeze-stages``."""
        return len(self.stages)
