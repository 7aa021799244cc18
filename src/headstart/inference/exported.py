"""Exported models (ONNX, TorchScript) as classifiers: load them with their classes and
preprocessing, and run them.

Both formats carry the class names and the preprocessing spec as JSON (ONNX ``metadata_props``,
TorchScript ``_extra_files``), so an exported file is enough to predict.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.artifact import LoadedModel
from headstart.errors import ModelError
from headstart.preprocessing import PreprocessSpec

__all__ = [
    "EXPORT_FORMAT",
    "META_KEY",
    "TS_EXTRA",
    "OnnxModel",
    "export_description",
    "load_exported",
    "load_onnx",
    "load_torchscript",
    "run_exported",
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



class OnnxModel(nn.Module):
    """An ONNX Runtime session that behaves like a classifier ``nn.Module`` on the CPU.

    Calling it on a float (N, 3, H, W) tensor returns (N, num_classes) logits. A model exported
    with a fixed batch size is run in chunks of that size. It holds one empty parameter so code
    that reads the device with ``next(model.parameters()).device`` keeps working.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of preprocessed images."""
        array = x.detach().cpu().float().numpy()
        step = self.fixed_batch or max(len(array), 1)
        outs = [
            self.session.run(None, {self.input_name: array[i : i + step]})[0]
            for i in range(0, len(array), step)
        ]
        return torch.from_numpy(np.concatenate(outs) if outs else np.empty((0, 0), np.float32))


def _loaded_from_description(text: str, model: nn.Module, path: Path) -> LoadedModel:
    try:
        doc = json.loads(text)
        if doc.get("format") != EXPORT_FORMAT:
            raise ValueError("not a headstart export")
        classes = tuple(str(c) for c in doc["classes"])
        pre = PreprocessSpec.from_dict(doc["preprocessing"])
        name = str(doc["model"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"{path} has no usable headstart description ({exc}); export it with "
            "`headstart export`."
        ) from None
    return LoadedModel(model=model.eval(), classes=classes, preprocessing=pre, name=name, meta=doc)


def load_onnx(path: str | Path) -> LoadedModel:
    """Load an exported ``.onnx`` file with its classes and preprocessing from its metadata.

    Raises:
        ModelError: The file is not an ONNX model written by ``export_onnx``.
    """
    path = Path(path)
    model = OnnxModel(path)
    props = model.session.get_modelmeta().custom_metadata_map
    return _loaded_from_description(props.get(META_KEY, ""), model, path)


def load_torchscript(path: str | Path) -> LoadedModel:
    """Load an exported TorchScript file with its classes and preprocessing.

    Raises:
        ModelError: The file is not a TorchScript model written by ``export_torchscript``.
    """
    path = Path(path)
    extra = {TS_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch.jit raises many types
        raise ModelError(f"cannot load TorchScript model {path}: {exc}") from None
    text = extra[TS_EXTRA]
    text = text.decode() if isinstance(text, bytes) else text
    return _loaded_from_description(text, model, path)


def load_exported(path: str | Path) -> LoadedModel:
    """Load an exported ONNX or TorchScript file (told apart by content, not by suffix).

    Raises:
        ModelError: The file is missing or is not a headstart export.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist; export a run with `headstart export RUN`.")
    return load_torchscript(path) if is_torchscript(path) else load_onnx(path)


def run_exported(path: Path, images: torch.Tensor) -> torch.Tensor:
    if not is_torchscript(path):
        return OnnxModel(path)(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.inference_mode():
        return model(images)


def is_torchscript(path: Path) -> bool:
    """Tell TorchScript (a zip archive) from ONNX (protobuf) by content, not by name."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"PK"
    except OSError as exc:
        raise ModelError(f"cannot read exported model {path}: {exc}") from None

