"""Contract tests over every model family: head, stage coverage and input-first order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from headstart.zoo import BackboneSpec, create_backbone

TIMM_TEST_MODELS = [
    "timm:test_resnet.r160_in1k",
    "timm:test_efficientnet",
    "timm:test_vit",
    "timm:test_convnext",
]
TV_MODELS = [
    "tv:resnet18",
    "tv:resnet50",
    "tv:vgg16",
    "tv:densenet121",
    "tv:mobilenet_v2",
    "tv:mobilenet_v3_large",
    "tv:mobilenet_v3_small",
    "tv:efficientnet_b0",
    "tv:inception_v3",
    "tv:convnext_tiny",
]


def assert_contract(model: nn.Module, spec: BackboneSpec) -> None:
    head = model.get_submodule(spec.classifier)
    assert isinstance(head, nn.Linear)
    assert head.in_features == spec.num_features
    names = [n for n, _ in model.named_parameters()]
    head_names = [f"{spec.classifier}.{n}" for n, _ in head.named_parameters()]
    listed = [n for stage in spec.stages for n in stage] + head_names
    assert sorted(listed) == sorted(names), "stages + head must cover every parameter once"
    assert spec.num_stages >= 2 and all(spec.stages)
    assert names[0] in spec.stages[0], "the first stage holds the stem"
    firsts = [min(names.index(n) for n in stage) for stage in spec.stages]
    assert firsts == sorted(firsts), "stages are ordered input-first"
    assert spec.preprocessing.input_size >= 8


@pytest.mark.parametrize("name", TIMM_TEST_MODELS)
def test_timm_test_models(name: str) -> None:
    model, spec = create_backbone(name, pretrained=False)
    assert_contract(model, spec)
    assert spec.source == "timm" and not spec.pretrained and spec.categories == ()
    size = spec.preprocessing.input_size
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size))
    assert out.shape == (1, model.get_submodule(spec.classifier).out_features)


@pytest.mark.parametrize("name", TV_MODELS)
def test_torchvision_families(name: str) -> None:
    model, spec = create_backbone(name, pretrained=False)
    assert_contract(model, spec)
    assert spec.source == "tv" and spec.name.startswith(name + ".")
    assert model.get_submodule(spec.classifier).out_features == 1000


def test_torchvision_stage_tables() -> None:
    model, spec = create_backbone("tv:resnet18", pretrained=False)
    assert spec.stages[0] == ("conv1.weight", "bn1.weight", "bn1.bias")
    assert [s[0].split(".")[0] for s in spec.stages[1:]] == ["layer1", "layer2", "layer3", "layer4"]
    assert spec.preprocessing.resize_size == 256 and spec.preprocessing.input_size == 224
    _, inception = create_backbone("tv:inception_v3", pretrained=False)
    assert inception.preprocessing.input_size == 299
    assert not any(n.startswith("AuxLogits") for stage in inception.stages for n in stage)


def test_bundled_lite0_contract(lite0) -> None:
    model, spec = lite0
    assert_contract(model, spec)
    assert spec.name == "bundled:efficientnet_lite0" and spec.arch == "tf_efficientnet_lite0"
    assert spec.pretrained and spec.license == "apache-2.0"
    assert len(spec.categories) == 1000 and spec.categories[285] == "Egyptian cat"
    pre = spec.preprocessing
    assert (pre.input_size, pre.interpolation, pre.crop_pct) == (224, "bicubic", 0.875)
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert not model.training


def test_bundled_lite2_input_size() -> None:
    _, spec = create_backbone("bundled:efficientnet_lite2", pretrained=False)
    assert spec.preprocessing.input_size == 260 and not spec.pretrained
