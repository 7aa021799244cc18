"""ONNX / TorchScript export: parity with PyTorch, metadata, failure on a broken export."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from headstart.artifact import LoadedModel  # noqa: E402
from headstart.inference import export  # noqa: E402
from headstart.inference.export import (  # noqa: E402
    ParityError,
    check_parity,
    export_model,
    export_onnx,
    parity_images,
)
from headstart.inference.exported import load_exported, load_onnx  # noqa: E402
from headstart.inference.predict import predict_files  # noqa: E402

CLASSES = ("cat", "dog", "fox")


def make_loaded(name: str, *, pretrained: bool, size: int) -> LoadedModel:
    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    torch.manual_seed(0)
    model, spec = create_backbone(name, pretrained=pretrained)
    model = replace_head(model, spec, len(CLASSES)).eval()
    return LoadedModel(model, CLASSES, spec.preprocessing.with_size(size), spec.name)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return make_loaded("timm:test_resnet", pretrained=False, size=32)


@pytest.mark.parametrize(
    ("name", "pretrained", "formats"),
    [
        ("bundled:efficientnet_lite0", True, ("onnx",)),
        ("tv:resnet18", False, ("onnx", "torchscript")),
    ],
)
def test_export_parity(
    name: str, pretrained: bool, formats: tuple[str, ...], tmp_path: Path
) -> None:
    loaded = make_loaded(name, pretrained=pretrained, size=64)
    for fmt in formats:
        out = tmp_path / f"model.{fmt}"
        result = export_model("unused", fmt=fmt, out=out, loaded=loaded, num_images=4)
        assert result.path == out and out.is_file()
        assert result.parity.passed and result.parity.top1_agreement == 1.0
        assert result.parity.max_abs_diff < 1e-3 and result.parity.images == "generated"
        assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_onnx_metadata_round_trip(tiny: LoadedModel, tmp_path: Path) -> None:
    path = export_onnx(tiny, tmp_path / "m.onnx", dynamic_batch=False)
    back = load_onnx(path)
    assert back.classes == CLASSES and back.name == tiny.name
    assert back.preprocessing == tiny.preprocessing
    import onnx

    proto = onnx.load(str(path))
    assert not any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
    )
    images, _ = parity_images(tiny, count=3)
    # a fixed batch of 1 still serves a batch of 3 (run in chunks)
    assert check_parity(tiny, path, images).passed


def test_broken_export_fails_and_writes_nothing(
    tiny: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(loaded: LoadedModel, path: Path, **kw: object) -> Path:
        bad = copy.deepcopy(loaded.model)
        with torch.no_grad():
            next(bad.parameters()).mul_(1.5)
        patched = LoadedModel(bad, loaded.classes, loaded.preprocessing, loaded.name)
        return export_onnx(patched, path, **kw)

    monkeypatch.setitem(export._EXPORTERS, "onnx", broken)
    out = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="does not match"):
        export_model("unused", out=out, loaded=tiny, num_images=4)
    assert list(tmp_path.iterdir()) == []


def test_predict_with_exported_files(tiny: LoadedModel, tmp_path: Path) -> None:
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", CLASSES, n=2)
    files = sorted(data.rglob("*.png"))
    expected = predict_files(tiny, files, topk=2)
    for fmt in ("onnx", "torchscript"):
        result = export_model("unused", fmt=fmt, out=tmp_path / f"m.{fmt}", loaded=tiny)
        exported = load_exported(result.path)
        got = predict_files(exported, files, topk=2)
        assert [p.labels for p in got] == [p.labels for p in expected]
        for a, b in zip(got, expected):
            assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_export_a_trained_run_uses_its_validation_split(tmp_path: Path) -> None:
    from tests.cli.test_cli import run
    from tests.conftest import make_image_folder
    from tests.e2e_helpers import TINY_MODEL, tiny_weights

    data = make_image_folder(tmp_path / "data", CLASSES, n=4, layout="split")
    args = [
        "train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(tmp_path)),
        "--strategy", "full", "--epochs", "1", "--image-size", "32", "--batch-size", "8",
        "--out", str(tmp_path / "run"), "--seed", "1",
    ]  # fmt: skip
    code, out, err = run(args)
    assert code == 0, out + err
    result = export_model(tmp_path / "run")
    assert result.path == tmp_path / "run" / "model" / "model.onnx"
    assert result.parity.images == "validation split" and result.parity.num_images == 6
    assert load_exported(result.path).classes == CLASSES
