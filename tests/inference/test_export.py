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
    build_onnx,
    check_parity,
    export_model,
    parity_images,
)
from headstart.inference.exported import load_exported, load_exported_bytes  # noqa: E402
from headstart.inference.predict import predict_files  # noqa: E402
from tests.inference.helpers import tiny_loaded  # noqa: E402

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_loaded(CLASSES)


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
    loaded = tiny_loaded(CLASSES, name=name, pretrained=pretrained, size=64)
    for fmt in formats:
        out = tmp_path / f"model.{fmt}"
        result = export_model(loaded, fmt=fmt, out=out, num_images=4)
        assert result.path == out and out.is_file()
        assert out.stat().st_mode & 0o777 == 0o644
        assert result.parity.passed and result.parity.top1_agreement == 1.0
        assert result.parity.max_abs_diff < 1e-3 and result.parity.images == "generated"
        assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_onnx_metadata_round_trip(tiny: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(build_onnx(tiny, dynamic_batch=False))
    back = load_exported(path)
    assert back.classes == CLASSES and back.name == tiny.name
    assert back.preprocessing == tiny.preprocessing
    import onnx

    proto = onnx.load(str(path))
    assert not any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
    )
    images, _ = parity_images(tiny, count=3)
    # a fixed batch of 1 still serves a batch of 3 (run in chunks)
    assert check_parity(tiny, back, images).passed


def test_broken_export_fails_and_writes_nothing(
    tiny: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(loaded: LoadedModel, *, opset: int, dynamic_batch: bool) -> bytes:
        bad = copy.deepcopy(loaded.model)
        with torch.no_grad():
            next(bad.parameters()).mul_(1.5)
        patched = LoadedModel(bad, loaded.classes, loaded.preprocessing, loaded.name)
        return build_onnx(patched, opset=opset, dynamic_batch=dynamic_batch)

    monkeypatch.setattr(export, "build_onnx", broken)
    out = tmp_path / "sub" / "m.onnx"
    with pytest.raises(ParityError, match="does not match"):
        export_model(tiny, out=out, num_images=4)
    assert list(tmp_path.iterdir()) == []


def test_predict_with_exported_files(tiny: LoadedModel, tmp_path: Path) -> None:
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", CLASSES, n=2)
    files = sorted(data.rglob("*.png"))
    expected = predict_files(tiny, files, topk=2)
    for fmt in ("onnx", "torchscript"):
        result = export_model(tiny, fmt=fmt, out=tmp_path / f"m.{fmt}")
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


def test_export_is_checked_from_memory_then_written_once(
    tiny: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parity check runs on the bytes; the only write is the final atomic one."""
    writes: list[Path] = []
    real = export.atomic_write

    def counting(path: Path, content: bytes) -> Path:
        assert not path.exists()
        writes.append(path)
        return real(path, content)

    monkeypatch.setattr(export, "atomic_write", counting)
    out = tmp_path / "m.ts"
    result = export_model(tiny, fmt="torchscript", out=out, num_images=2)
    assert writes == [out] and list(tmp_path.iterdir()) == [out]
    assert load_exported_bytes(out.read_bytes()).classes == CLASSES
    assert result.parity.passed


def test_export_errors_say_what_to_do(tiny: LoadedModel, tmp_path: Path) -> None:
    from headstart.errors import ModelError

    with pytest.raises(ModelError, match="pass --out FILE"):
        export_model(tiny)
    with pytest.raises(ModelError, match="unknown export format 'tflite'"):
        export_model(tiny, fmt="tflite", out=tmp_path / "m")
    with pytest.raises(ModelError, match="tolerance must be positive"):
        export_model(tiny, out=tmp_path / "m.onnx", tolerance=0)
    done = export_model(tiny, out=tmp_path / "m.onnx", num_images=2).path
    with pytest.raises(ModelError, match="already an exported file"):
        export_model(done, out=tmp_path / "again.onnx")
    with pytest.raises(ModelError, match="is an exported model"):
        export_model(load_exported(done), out=tmp_path / "again.onnx")


def test_an_existing_user_file_or_folder_is_never_overwritten(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    from headstart.errors import ConfigError
    from headstart.inference.exported import is_export_file

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for fmt in ("onnx", "torchscript"):
        with pytest.raises(ConfigError, match="exists and is not a headstart export"):
            export_model(tiny, fmt=fmt, out=notes, num_images=2)
    assert notes.read_text() == "my notes\n"
    with pytest.raises(ConfigError, match=r"is a folder; give the file to write, e\.g\. --out"):
        export_model(tiny, out=tmp_path, num_images=2)
    fake = tmp_path / "fake.onnx"  # an ONNX-looking start, no description of ours
    fake.write_bytes(b"\x08\x07 not a model")
    with pytest.raises(ConfigError, match="not a headstart export"):
        export_model(tiny, out=fake, num_images=2)
    assert not is_export_file(fake) and not is_export_file(notes)
    assert not is_export_file(tmp_path / "missing.onnx")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_earlier_export_is_replaced(tiny: LoadedModel, tmp_path: Path, fmt: str) -> None:
    from headstart.inference.exported import is_export_file

    out = tmp_path / "model.bin"  # told apart by content, not by the suffix
    first = export_model(tiny, fmt=fmt, out=out, num_images=2).path
    assert is_export_file(first)
    again = export_model(tiny, fmt=fmt, out=out, num_images=2)
    assert again.path == out and load_exported(out).classes == CLASSES


def test_an_unwritable_out_is_a_config_error(
    tiny: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.errors import ConfigError

    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ConfigError, match="cannot write the export to .*; choose a writable"):
        export_model(tiny, out=notes / "model.onnx", num_images=2)  # a file in the way

    def read_only(path: Path, content: bytes) -> Path:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(export, "atomic_write", read_only)
    with pytest.raises(ConfigError, match="Permission denied; choose a writable --out"):
        export_model(tiny, out=tmp_path / "m.onnx", num_images=2)


def test_parity_images_leave_out_an_image_out_of_memory(
    tiny: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_folder_factory
) -> None:
    import headstart.inference.predict as predict_module

    files = sorted(image_folder_factory(tmp_path / "data", CLASSES, n=2).rglob("*.png"))
    real = predict_module.image_to_tensor

    def fake(source, *args, **kwargs):  # noqa: ANN001, ANN202 - the one decode function's shape
        if source == str(files[0]):
            raise MemoryError
        return real(source, *args, **kwargs)

    monkeypatch.setattr(predict_module, "image_to_tensor", fake)
    monkeypatch.setattr(export, "_split_files", lambda _folder: [str(f) for f in files])
    images, source = parity_images(tiny, tmp_path, count=16)
    assert source == "validation split" and len(images) == len(files) - 1


def test_an_export_never_goes_into_the_training_images(tmp_path, image_folder_factory) -> None:
    from headstart.errors import ConfigError
    from tests.e2e_helpers import TINY_MODEL, run_cli, tiny_weights

    data = image_folder_factory(tmp_path / "photos", ("cat", "dog"), n=6)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(data), "--model", TINY_MODEL, "--weights",
                            str(tiny_weights(tmp_path)), "--image-size", "32", "--epochs", "1",
                            "--strategy", "feature-extract", "--out", str(run)])  # fmt: skip
    assert code == 0, err
    with pytest.raises(ConfigError, match="inside the data folder"):
        export_model(run, out=data / "cat" / "model.onnx")
    assert not (data / "cat" / "model.onnx").exists()
