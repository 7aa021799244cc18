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
        ("resnet18", "tv:resnet18.IMAGENET1K_V1"),
        ("resnet50", "tv:resnet50.IMAGENET1K_V2"),
        ("convnext_tiny", "tv:convnext_tiny.IMAGENET1K_V1"),
        ("resnet18.a1_in1k", "timm:resnet18.a1_in1k"),
        ("vit_base_patch16_224", "timm:vit_base_patch16_224"),
        ("resnet50.IMAGENET1K_V1", "tv:resnet50.IMAGENET1K_V1"),
        ("torchvision:resnet18", "tv:resnet18.IMAGENET1K_V1"),
        ("torchvision:vit_b_16", "tv:vit_b_16.IMAGENET1K_V1"),
        ("tv:swin_v2_t", "tv:swin_v2_t.IMAGENET1K_V1"),
        ("tv:regnet_y_16gf.IMAGENET1K_SWAG_E2E_V1", "tv:regnet_y_16gf.IMAGENET1K_SWAG_E2E_V1"),
        ("tv:maxvit_t", "tv:maxvit_t.IMAGENET1K_V1"),
        ("tv:efficientnet_v2_s", "tv:efficientnet_v2_s.IMAGENET1K_V1"),
        ("hf-hub:timm/resnet18.a1_in1k", "hf-hub:timm/resnet18.a1_in1k"),
        ("hf-hub:org/model@main", "hf-hub:org/model@main"),
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
        ("torchvison:resnet18", "Did you mean: torchvision"),
        ("tv:vit_b16", "Did you mean: tv:vit_b_16"),
        ("torchvision:swin_v2", "tv:swin_v2_t"),
        ("vit_b16", "Did you mean: vit_b_16"),
        ("resnet50.IMAGENET1K_V9", "tv:resnet50 has no weights 'IMAGENET1K_V9'"),
        ("hf-hub:resnet18", "hf-hub:<owner>/<repo>"),
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
    for arch in (
        "vit_b_16",
        "swin_t",
        "swin_v2_b",
        "regnet_y_400mf",
        "maxvit_t",
        "efficientnet_v2_s",
    ):
        assert f"tv:{arch}" in names, arch
    assert not list_backbones("hf-hub:*"), "the hub is not listed offline"
    assert list_backbones("tv:convnext_tiny*") == [
        "tv:convnext_tiny",
        "tv:convnext_tiny.IMAGENET1K_V1",
    ]


def test_registering_a_source_twice_fails() -> None:
    with pytest.raises(ModelError, match="already registered"):
        register_source(Source("timm", lambda n: None, lambda n, **k: None, list))  # type: ignore[arg-type]
