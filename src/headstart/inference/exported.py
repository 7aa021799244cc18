"""Exported models (ONNX, TorchScript) as classifiers: their description, loading and running.

Both formats carry the class names and the preprocessing spec as JSON (ONNX ``metadata_props``,
TorchScript ``_extra_files``), so an exported file is enough to predict. A file and the bytes of
a new export (checked before it is written) load through the same function; the format is told
apart by content, not by suffix. ONNX models run on the CPU; TorchScript ones on any device.
``is_export_file`` tells an export headstart wrote from any other file, so that an export may
replace an earlier one but never a user's file.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.artifact import LoadedModel
from headstart.errors import ConfigError, ModelError
from headstart.inference.device import Device, resolve_device
from headstart.preprocessing import PreprocessSpec

__all__ = [
    "EXPORT_FORMAT",
    "META_KEY",
    "TS_EXTRA",
    "OnnxModel",
    "export_description",
    "is_export_file",
    "is_exported",
    "load_exported",
    "load_exported_bytes",
]

META_KEY = "headstart"
"""ONNX metadata key holding the JSON description (TorchScript: the extra file ``TS_EXTRA``)."""
TS_EXTRA = "headstart.json"
EXPORT_FORMAT = "headstart-export"


def export_description(loaded: LoadedModel) -> str:
    """JSON stored inside exported files: model name, classes and preprocessing."""
    doc = {
        "format": EXPORT_FORMAT,
        "model": loaded.name,
        "classes": list(loaded.classes),
        "preprocessing": loaded.preprocessing.to_dict(),
        "input": {"name": "input", "layout": "NCHW", "dtype": "float32"},
        "output": {"name": "logits", "softmax": False},
    }
    return json.dumps(doc)


def is_exported(loaded: LoadedModel) -> bool:
    """Whether ``loaded`` came from an exported file (rather than PyTorch weights)."""
    return loaded.meta.get("format") == EXPORT_FORMAT


def is_export_file(path: str | Path) -> bool:
    """Whether the file at ``path`` is an export headstart wrote, told by its content (its
    description), never by its name; nothing in it is run. Used before an export replaces it."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
            if head[:2] != b"PK" and head[:1] != b"\x08":  # a zip (TorchScript) or ONNX protobuf
                return False
            handle.seek(0)
            data = handle.read()
        text = _zip_description(data) if head == b"PK" else _onnx_description(data)
        return json.loads(text).get("format") == EXPORT_FORMAT
    except Exception:  # noqa: BLE001 - anything unreadable is not an export of ours
        return False


def _zip_description(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith(f"/extra/{TS_EXTRA}"))
        return archive.read(name).decode("utf-8")


def _onnx_description(data: bytes) -> str:
    import onnx

    proto = onnx.load_model_from_string(data)
    return next(p.value for p in proto.metadata_props if p.key == META_KEY)


class OnnxModel(nn.Module):
    """An ONNX Runtime session that behaves like a classifier ``nn.Module`` on the CPU.

    Calling it on a float (N, 3, H, W) tensor returns (N, num_classes) logits. A model exported
    with a fixed batch size is run in chunks of that size.
    """

    def __init__(self, data: bytes, *, origin: str) -> None:
        """Open an ONNX model from its bytes; ``origin`` names it in errors."""
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelError(f"cannot load ONNX model {origin}: {exc}") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of preprocessed images."""
        array = x.detach().cpu().float().numpy()
        step = self.fixed_batch or max(len(array), 1)
        outs = [
            self.session.run(None, {self.input_name: array[i : i + step]})[0]
            for i in range(0, len(array), step)
        ]
        return torch.from_numpy(np.concatenate(outs) if outs else np.empty((0, 0), np.float32))

    def description(self) -> str:
        """The JSON description stored in the model's metadata ("" when there is none)."""
        return str(self.session.get_modelmeta().custom_metadata_map.get(META_KEY, ""))


def _described(text: str, model: nn.Module, origin: str) -> LoadedModel:
    """``model`` with the classes and preprocessing of its JSON description."""
    try:
        doc = json.loads(text)
        if doc.get("format") != EXPORT_FORMAT:
            raise ValueError("not a headstart export")
        classes = tuple(str(c) for c in doc["classes"])
        pre = PreprocessSpec.from_dict(doc["preprocessing"])
        name = str(doc["model"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"{origin} has no usable headstart description ({exc}); export it with "
            "`headstart export`."
        ) from None
    return LoadedModel(model=model.eval(), classes=classes, preprocessing=pre, name=name, meta=doc)


def _load_onnx(data: bytes, device: torch.device, origin: str) -> LoadedModel:
    if device.type != "cpu":
        raise ConfigError(
            f"{origin} is an ONNX model, which headstart runs on the CPU only (onnxruntime's CPU "
            f"provider), not on {device}; use device='cpu', or load the run or model folder it "
            f"was exported from to run on {device}."
        )
    model = OnnxModel(data, origin=origin)
    return _described(model.description(), model, origin)


def _load_torchscript(data: bytes, device: torch.device, origin: str) -> LoadedModel:
    extra = {TS_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(io.BytesIO(data), map_location=device, _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch.jit raises many types
        raise ModelError(f"cannot load TorchScript model {origin}: {exc}") from None
    text = extra[TS_EXTRA]
    return _described(text.decode() if isinstance(text, bytes) else text, model, origin)


def load_exported_bytes(
    data: bytes, *, device: Device = "cpu", origin: str = "<bytes>"
) -> LoadedModel:
    """Load an exported ONNX or TorchScript model from its bytes (told apart by content).

    Args:
        data: The file's content (TorchScript is a zip archive, ONNX a protobuf).
        device: Where to run it; ONNX models run on the CPU only.
        origin: What to call the model in errors, e.g. its path.

    Raises:
        ModelError: The bytes are not a headstart export.
        ConfigError: ``device`` is not available, or is not the CPU for an ONNX model.
    """
    target = resolve_device(device)
    if data[:2] == b"PK":
        return _load_torchscript(data, target, origin)
    return _load_onnx(data, target, origin)


def load_exported(path: str | Path, *, device: Device = "cpu") -> LoadedModel:
    """Load an exported ONNX or TorchScript file with its classes and preprocessing.

    Raises:
        ModelError: The file is missing, unreadable, or not a headstart export.
        ConfigError: ``device`` is not available, or is not the CPU for an ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist; export a run with `headstart export RUN`.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read exported model {path}: {exc}") from None
    return load_exported_bytes(data, device=device, origin=str(path))
