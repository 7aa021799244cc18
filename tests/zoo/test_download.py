"""The real download code paths, exercised offline against pre-filled caches, and offline errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from headstart.errors import ModelError
from headstart.zoo import create_backbone
from headstart.zoo._common import ensure_online


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty torch and Hugging Face caches under tmp_path; downloads forbidden."""
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_torchvision_loads_from_prefilled_torch_hub_cache(offline: Path) -> None:
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    state = torchvision.models.resnet18().state_dict()
    cached = offline / "torch" / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    model, spec = create_backbone("tv:resnet18")
    assert spec.pretrained and spec.name == "tv:resnet18.IMAGENET1K_V1"
    assert spec.categories[285] == "Egyptian cat"
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_torchvision_offline_error(offline: Path) -> None:
    with pytest.raises(ModelError, match="bundled:efficientnet_lite0") as info:
        create_backbone("tv:resnet18")
    message = str(info.value)
    assert "tv:resnet18.IMAGENET1K_V1" in message and "checkpoints" in message
    assert "\n" not in message


def test_timm_loads_from_prefilled_hf_cache(offline: Path) -> None:
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    repo = offline / "hf" / "models--timm--test_resnet.r160_in1k"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    model, spec = create_backbone("timm:test_resnet.r160_in1k")
    assert spec.pretrained and spec.preprocessing.input_size == 160
    assert len(spec.categories) == 1000
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


def test_timm_offline_error(offline: Path) -> None:
    with pytest.raises(ModelError, match="bundled:efficientnet_lite0.*Hugging Face cache"):
        create_backbone("timm:test_resnet.r160_in1k")


def test_unreachable_host_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HEADSTART_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    with pytest.raises(ModelError, match="no network.*bundled:efficientnet_lite0"):
        ensure_online("https://127.0.0.1:9/weights.pth", "tv:demo", "the cache")
