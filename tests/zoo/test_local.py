"""Local weight files: safe loading, strict matching, head adaptation."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from headstart.errors import ModelError
from headstart.zoo import create_backbone

ARCH = "timm:test_resnet"


def _state(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    model = timm.create_model("test_resnet", pretrained=False, num_classes=num_classes)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def test_safetensors_round_trip(tmp_path: Path) -> None:
    state = _state()
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    model, spec = create_backbone(ARCH, pretrained=False, weights_file=path)
    assert spec.pretrained
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pth_wrapped_state_dict_and_other_class_count(tmp_path: Path) -> None:
    state = _state(num_classes=7)
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    model, spec = create_backbone(ARCH, pretrained=False, weights_file=path)
    head = model.get_submodule(spec.classifier)
    assert head.out_features == 7 and head.in_features == spec.num_features
    assert torch.equal(head.weight, state["fc.weight"])
    assert spec.categories == ()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": _Evil(marker)}, path)
    with pytest.raises(ModelError, match="evil.pth"):
        create_backbone(ARCH, pretrained=False, weights_file=path)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file_names_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    if suffix == ".safetensors":
        save_file(_state(), str(path))
    else:
        torch.save(_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=f"broken{suffix}") as info:
        create_backbone(ARCH, pretrained=False, weights_file=path)
    assert "\n" not in str(info.value)


def test_wrong_shapes_and_keys(tmp_path: Path) -> None:
    state = _state()
    state["conv1.0.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "shapes.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelError, match="wrong shapes.*conv1.0.weight"):
        create_backbone(ARCH, pretrained=False, weights_file=path)
    other = tmp_path / "other.safetensors"
    model = timm.create_model("test_efficientnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(other))
    with pytest.raises(ModelError, match="missing.*unexpected"):
        create_backbone(ARCH, pretrained=False, weights_file=other)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        create_backbone(ARCH, weights_file=tmp_path / "nope.pth")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported type .onnx.*pth.tar"):
        create_backbone(ARCH, weights_file=tmp_path / "w.onnx")
    (tmp_path / "w.tar").write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported type .tar"):
        create_backbone(ARCH, weights_file=tmp_path / "w.tar")


def test_timm_training_checkpoint_pth_tar(tmp_path: Path) -> None:
    """timm's train.py writes ``*.pth.tar`` with its argparse arguments beside the state dict."""
    import argparse

    state = _state(num_classes=5)
    path = tmp_path / "model_best.pth.tar"
    args = argparse.Namespace(model="test_resnet", lr=0.1, epochs=3, aa=None, mean=[0.5])
    ema = {k: torch.zeros_like(v) for k, v in state.items()}
    optimizer = {"state": {}, "param_groups": []}
    checkpoint = {"epoch": 3, "arch": "test_resnet", "state_dict": state, "state_dict_ema": ema,
                  "optimizer": optimizer, "version": 2, "args": args}  # fmt: skip
    torch.save(checkpoint, path)
    model, spec = create_backbone(ARCH, pretrained=False, weights_file=path)
    assert model.get_submodule(spec.classifier).out_features == 5
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("prefix", ["model.", "module.", "model.module.", "model._orig_mod."])
def test_wrapper_prefixes_are_removed(tmp_path: Path, prefix: str) -> None:
    """Lightning keeps ``self.model``'s weights as ``model.*`` under ``state_dict``; DDP adds
    ``module.``, torch.compile ``_orig_mod.``."""
    state = _state()
    path = tmp_path / "epoch=2-step=30.ckpt"
    torch.save({"epoch": 2, "global_step": 30, "pytorch-lightning_version": "2.5.0",
                "state_dict": {prefix + k: v for k, v in state.items()}}, path)  # fmt: skip
    model, _ = create_backbone(ARCH, pretrained=False, weights_file=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_prefix_the_model_has_is_kept(tmp_path: Path) -> None:
    from headstart.zoo.local import apply_weights_file

    wrapped = torch.nn.Sequential()
    wrapped.add_module("model", timm.create_model("test_resnet", pretrained=False))
    state = {k: v.clone() + 1 for k, v in wrapped.state_dict().items()}
    path = tmp_path / "wrapped.pth"
    torch.save(state, path)
    apply_weights_file(wrapped, path, classifier="model.fc")
    assert torch.equal(wrapped.state_dict()["model.fc.weight"], state["model.fc.weight"])


def test_other_pickled_objects_in_a_checkpoint_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": _state(), "hyper_parameters": _Evil(tmp_path / "pwned")}, path)
    with pytest.raises(ModelError, match="pickled Python objects"):
        create_backbone(ARCH, pretrained=False, weights_file=path)
    assert not (tmp_path / "pwned").exists()
