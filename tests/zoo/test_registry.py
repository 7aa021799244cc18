"""Names: resolution, listing, registration."""

from __future__ import annotations

import pytest

from headstart.errors import ModelError
from headstart.zoo import list_backbones, resolve_name
from headstart.zoo.registry import Source, register_source


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("efficientnet_lite0", "bundled:efficientnet_lite0"),
        ("bundled:efficientnet_lite2", "bundled:efficientnet_lite2"),
        ("resnet18", "timm:resnet18"),
        ("timm:convnext_tiny.fb_in1k", "timm:convnext_tiny.fb_in1k"),
        ("tv:resnet18", "tv:resnet18.IMAGENET1K_V1"),
        ("tv:resnet50.DEFAULT", "tv:resnet50.IMAGENET1K_V2"),
        ("tv:resnet50.IMAGENET1K_V1", "tv:resnet50.IMAGENET1K_V1"),
    ],
)
def test_resolve_name(name: str, canonical: str) -> None:
    assert resolve_name(name) == canonical


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("resnet181", "Did you mean"),
        ("efficentnet_lite0", "Did you mean: efficientnet_lite0"),
        ("tv:resnet18.IMAGENET1K_V9", "IMAGENET1K_V1"),
        ("timm:resnet18.no_such_tag", "Did you mean"),
        ("hub:resnet18", "tv:"),
    ],
)
def test_unknown_names_suggest(name: str, hint: str) -> None:
    with pytest.raises(ModelError, match=hint):
        resolve_name(name)


def test_list_backbones() -> None:
    names = list_backbones()
    assert "bundled:efficientnet_lite0" in names and "tv:resnet18.IMAGENET1K_V1" in names
    assert "timm:resnet18" in names and "timm:resnet18.a1_in1k" in names
    lites = list_backbones("efficientnet_lite*")
    assert "bundled:efficientnet_lite1" in lites and "timm:efficientnet_lite0" in lites
    assert list_backbones("tv:convnext_tiny*") == [
        "tv:convnext_tiny",
        "tv:convnext_tiny.IMAGENET1K_V1",
    ]


def test_registering_a_source_twice_fails() -> None:
    with pytest.raises(ModelError, match="already registered"):
        register_source(Source("timm", lambda n: None, lambda n, **k: None, list))  # type: ignore[arg-type]
