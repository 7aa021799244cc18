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
    "tv:efficientnet_v2_s",
    "tv:regnet_y_400mf",
    "tv:regnet_x_400mf",
    "tv:swin_t",
    "tv:swin_v2_t",
    "tv:maxvit_t",
    "tv:vit_b_16",
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


@pytest.mark.parametrize(
    ("name", "size"),
    [("tv:regnet_y_400mf", 64), ("tv:swin_v2_t", 64), ("tv:efficientnet_v2_s", 64)],
)
def test_new_torchvision_families_train_a_new_head(name: str, size: int) -> None:
    """Head replaced, the last stage and the head trainable, a small forward and backward pass."""
    from headstart.surgery import replace_head, set_trainable_stages

    torch.manual_seed(0)
    model, spec = create_backbone(name, pretrained=False)
    replace_head(model, spec, 3)
    set_trainable_stages(model, spec, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {
        f"{spec.classifier}.{n}" for n, _ in model.get_submodule(spec.classifier).named_parameters()
    }
    assert trainable == set(spec.stages[-1]) | head
    out = model.train()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3)
    out.sum().backward()


def test_vit_and_maxvit_stage_tables() -> None:
    model, vit = create_backbone("tv:vit_b_16", pretrained=False)
    assert vit.classifier == "heads.head" and vit.num_features == 768 and vit.fixed_input_size
    assert {"class_token", "conv_proj.weight", "encoder.pos_embedding"} <= set(vit.stages[0])
    blocks = [
        sorted({int(n.split(".")[2].rpartition("_")[2]) for n in stage if ".layers." in n})
        for stage in vit.stages[1:]
    ]
    assert blocks == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert "encoder.ln.weight" in vit.stages[-1]
    assert (vit.preprocessing.input_size, vit.preprocessing.interpolation) == (224, "bilinear")
    swag, swag_spec = create_backbone("tv:vit_b_16.IMAGENET1K_SWAG_E2E_V1", pretrained=False)
    assert swag_spec.preprocessing.input_size == 384 and swag_spec.preprocessing.crop_pct == 1.0
    assert swag.image_size == 384, "built at its weights' size, as torchvision builds it"
    _, maxvit = create_backbone("tv:maxvit_t", pretrained=False)
    assert maxvit.classifier == "classifier.5" and maxvit.fixed_input_size
    assert {"classifier.2.weight", "classifier.3.weight"} <= set(maxvit.stages[-1])
    _, swin = create_backbone("tv:swin_t", pretrained=False)
    assert "norm.weight" in swin.stages[-1] and not swin.fixed_input_size
    assert swin.preprocessing.resize_size == 232 and swin.preprocessing.interpolation == "bicubic"
