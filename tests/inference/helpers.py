"""A small classifier for the inference tests, built offline from timm's ``test_*`` models."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from headstart.artifact import LoadedModel


def tiny_loaded(
    classes: Sequence[str],
    *,
    name: str = "timm:test_resnet",
    pretrained: bool = False,
    size: int = 32,
) -> LoadedModel:
    """``name`` with a new head for ``classes`` (seeded), in eval mode, run at ``size`` px."""
    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    torch.manual_seed(0)
    model, spec = create_backbone(name, pretrained=pretrained)
    model = replace_head(model, spec, len(classes)).eval()
    return LoadedModel(model, tuple(classes), spec.preprocessing.with_size(size), spec.name)
