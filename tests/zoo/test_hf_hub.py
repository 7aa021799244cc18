"""``hf-hub:owner/repo`` names: routing to timm, a pre-filled cache, the offline error."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from headstart.errors import ModelError
from headstart.zoo import create_backbone, hf_hub

REPO = "someone/test_resnet.r160_in1k"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache under tmp_path; downloads forbidden."""
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "hf"


def _fill_cache(cache: Path, repo: str, *, weights: bool) -> dict[str, torch.Tensor]:
    """Write the snapshot layout huggingface_hub keeps: config.json (+ model.safetensors)."""
    from timm.models._hub import save_config_for_hf

    model = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    folder = cache / f"models--{repo.replace('/', '--')}"
    revision = "1" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    save_config_for_hf(model, str(snapshot / "config.json"))
    state = {k: v.contiguous() + 1 for k, v in model.state_dict().items()}
    if weights:
        save_file(state, str(snapshot / "model.safetensors"))
    return state


def test_a_cached_repository_builds_offline(offline: Path) -> None:
    state = _fill_cache(offline, REPO, weights=True)
    model, spec = create_backbone(f"hf-hub:{REPO}")
    assert spec.name == f"hf-hub:{REPO}" and spec.source == "hf-hub" and spec.pretrained
    assert spec.preprocessing.input_size == 160 and len(spec.categories) == 1000
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])


def test_offline_without_the_cache_says_so_in_one_line(offline: Path) -> None:
    with pytest.raises(ModelError, match="hf-hub:someone/nothing.*Hugging Face cache") as info:
        create_backbone("hf-hub:someone/nothing")
    assert "bundled:efficientnet_lite0" in str(info.value) and "\n" not in str(info.value)


def test_cached_config_without_weights_needs_the_hub_for_pretrained(offline: Path) -> None:
    _fill_cache(offline, REPO, weights=False)
    with pytest.raises(ModelError, match="downloads are disabled"):
        create_backbone(f"hf-hub:{REPO}")
    model, spec = create_backbone(f"hf-hub:{REPO}", pretrained=False)
    assert not spec.pretrained and spec.classifier == "fc"


def test_online_names_go_to_timm_create_model(
    monkeypatch: pytest.MonkeyPatch, offline: Path
) -> None:
    """Without a cached snapshot the name goes to timm as it is, after the network check."""
    calls: list[tuple[str, bool]] = []
    checked: list[str] = []
    real_create = timm.create_model

    def fake_create(name: str, *, pretrained: bool) -> torch.nn.Module:
        calls.append((name, pretrained))
        return real_create("test_resnet.r160_in1k", pretrained=False)

    monkeypatch.setattr(hf_hub, "ensure_online", lambda url, name, *a, **k: checked.append(name))
    monkeypatch.setattr(timm, "create_model", fake_create)
    _, spec = create_backbone("hf-hub:timm/test_resnet.r160_in1k@main")
    assert calls == [("hf-hub:timm/test_resnet.r160_in1k@main", True)]
    assert checked == ["hf-hub:timm/test_resnet.r160_in1k@main"]
    assert spec.name == "hf-hub:timm/test_resnet.r160_in1k@main"


def test_hub_errors_become_one_line(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    def failing(name: str, *, pretrained: bool) -> torch.nn.Module:
        raise OSError("401 Client Error: Repository Not Found\nfor url ...")

    monkeypatch.setattr(hf_hub, "ensure_online", lambda *a, **k: None)
    monkeypatch.setattr(timm, "create_model", failing)
    with pytest.raises(ModelError, match="Repository Not Found") as info:
        create_backbone("hf-hub:someone/private")
    assert "\n" not in str(info.value)
