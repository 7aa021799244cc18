"""Exported files load with their description, from a file or from bytes, on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from headstart.artifact import LoadedModel  # noqa: E402
from headstart.errors import ConfigError, ModelError  # noqa: E402
from headstart.inference import exported  # noqa: E402
from headstart.inference.export import build_onnx, build_torchscript  # noqa: E402
from headstart.inference.exported import (  # noqa: E402
    OnnxModel,
    is_exported,
    load_exported,
    load_exported_bytes,
)
from tests.inference.helpers import tiny_loaded  # noqa: E402

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_loaded(CLASSES)


@pytest.fixture(scope="module")
def exports(tiny: LoadedModel) -> dict[str, bytes]:
    return {"onnx": build_onnx(tiny), "torchscript": build_torchscript(tiny)}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_file_and_bytes_load_alike(
    fmt: str, tiny: LoadedModel, exports: dict[str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "model.bin"  # the format is told by content, not by name
    path.write_bytes(exports[fmt])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tiny.model(images)
    for loaded in (load_exported(path), load_exported_bytes(exports[fmt], device="cpu")):
        assert loaded.classes == CLASSES and loaded.name == tiny.name
        assert loaded.preprocessing == tiny.preprocessing
        assert is_exported(loaded) and not is_exported(tiny)
        assert loaded.device == torch.device("cpu")
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(images), expected, atol=1e-4, rtol=1e-4)
    assert isinstance(load_exported(path).model, OnnxModel) == (fmt == "onnx")


def test_onnx_runs_on_the_cpu_only(
    exports: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for a GPU (faked, as this machine may have none), ONNX says it runs on the CPU."""
    monkeypatch.setattr(exported, "resolve_device", lambda _device: torch.device("cuda", 0))
    with pytest.raises(ConfigError, match="CPU only"):
        load_exported_bytes(exports["onnx"], device="cuda", origin="m.onnx")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_an_unavailable_device_is_refused(exports: dict[str, bytes]) -> None:
    with pytest.raises(ConfigError, match="use one of: auto, cpu"):
        load_exported_bytes(exports["torchscript"], device="cuda")


def test_broken_or_foreign_files_say_so(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    with pytest.raises(ModelError, match="does not exist"):
        load_exported(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="cannot load ONNX model junk"):
        load_exported_bytes(b"not a model", origin="junk")
    with pytest.raises(ModelError, match="cannot load TorchScript model"):
        load_exported_bytes(b"PK\x03\x04 not a zip")
    node = helper.make_node("Identity", ["input"], ["logits"])
    io_ = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("input", "logits")]
    graph = helper.make_graph([node], "g", [io_[0]], [io_[1]])
    foreign = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match="no usable headstart description"):
        load_exported_bytes(foreign.SerializeToString())
