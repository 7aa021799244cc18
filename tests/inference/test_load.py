"""Loading any model reference onto a device, and the model folder it loads (modes included)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from headstart.artifact import LoadedModel, load_model_dir, save_model_dir
from headstart.errors import ConfigError, ModelError
from headstart.inference.load import find_model_dir, load_model

CLASSES = ("cat", "dog")


def _save(path: Path) -> tuple[Path, torch.nn.Module]:
    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    torch.manual_seed(0)
    model, spec = create_backbone("timm:test_resnet", pretrained=False)
    model = replace_head(model, spec, len(CLASSES)).eval()
    pre = spec.preprocessing.with_size(32)
    return save_model_dir(path, model, spec=spec, classes=CLASSES, preprocessing=pre), model


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would make every new file 0600 and folder 0700."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_model_folder_is_shareable(tmp_path: Path, strict_umask: None) -> None:
    model_dir, _ = _save(tmp_path / "new" / "model")
    for folder in (tmp_path / "new", model_dir):
        assert folder.stat().st_mode & 0o777 == 0o755, folder
    files = sorted(p.name for p in model_dir.iterdir())
    assert files == [".headstart", "headstart.json", "model.safetensors"], "no temporary file left"
    for file in model_dir.iterdir():
        assert file.stat().st_mode & 0o777 == 0o644, file


def test_saving_again_replaces_the_files(tmp_path: Path) -> None:
    model_dir, model = _save(tmp_path / "model")
    _save(model_dir)
    back = load_model_dir(model_dir)
    for a, b in zip(model.state_dict().values(), back.model.state_dict().values()):
        assert torch.equal(a, b)
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == [".headstart", "headstart.json", "model.safetensors"]


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_load_a_model_folder_or_run_onto_the_cpu(
    tmp_path: Path, device: str | torch.device
) -> None:
    model_dir, model = _save(tmp_path / "run" / "model")
    for ref in (model_dir, tmp_path / "run", str(model_dir)):
        loaded = load_model(ref, device=device)
        assert isinstance(loaded, LoadedModel) and loaded.classes == CLASSES
        assert loaded.device == torch.device("cpu") and not loaded.model.training
        for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()):
            assert torch.equal(a, b)
    assert find_model_dir(tmp_path / "run") == model_dir
    assert find_model_dir(tmp_path) is None


def test_image_size_overrides_the_preprocessing(tmp_path: Path) -> None:
    model_dir, _ = _save(tmp_path / "model")
    assert load_model(model_dir, image_size=48).preprocessing.input_size == 48


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "meta", "tpu9"])
def test_a_device_that_cannot_run_is_refused_before_loading(tmp_path: Path, device: str) -> None:
    model_dir, _ = _save(tmp_path / "model")
    (model_dir / "model.safetensors").write_bytes(b"broken")  # never read
    with pytest.raises(ConfigError, match="use one of: auto, cpu") as info:
        load_model(model_dir, device=device)
    assert "\n" not in str(info.value)


def test_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a headstart model"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="neither an existing run/model folder"):
        load_model("no-such-thing-anywhere")


def test_exported_files_have_a_fixed_size(tmp_path: Path) -> None:
    file = tmp_path / "model.onnx"
    file.write_bytes(b"whatever")
    with pytest.raises(ModelError, match="fixed input size"):
        load_model(file, image_size=64)


def test_a_users_files_are_never_replaced_by_a_saved_model(tmp_path) -> None:
    import pytest
    import timm

    from headstart.artifact import save_model_dir
    from headstart.errors import ModelError
    from headstart.files import folder_kind
    from headstart.preprocessing import PreprocessSpec
    from tests.training.helpers import spec_from_timm

    model = timm.create_model("test_resnet", pretrained=False)
    spec = spec_from_timm(model, "test_resnet")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "headstart.json").write_text('{"my": "notes"}')
    with pytest.raises(ModelError, match="not written by headstart"):
        save_model_dir(folder, model, spec=spec, classes=["a"], preprocessing=PreprocessSpec())
    assert (folder / "headstart.json").read_text() == '{"my": "notes"}'
    ok = save_model_dir(tmp_path / "m", model, spec=spec, classes=["a"],
                        preprocessing=PreprocessSpec())  # fmt: skip
    assert folder_kind(ok) == "model"
    save_model_dir(ok, model, spec=spec, classes=["a", "b"], preprocessing=PreprocessSpec())
