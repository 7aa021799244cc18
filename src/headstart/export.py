"""Export a trained model to ONNX or TorchScript, and check that the export computes the same thing.

Both formats carry the class names and the preprocessing spec as JSON (ONNX ``metadata_props``,
TorchScript ``_extra_files``), so an exported file is enough to predict. Every export is followed
by a parity check on real (or generated) preprocessed images: a file that disagrees with the
PyTorch model is never left behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.artifact import LoadedModel, find_model_dir
from headstart.data.images import image_to_tensor
from headstart.errors import DataError, ModelError
from headstart.preprocessing import PreprocessSpec

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "OnnxModel",
    "ParityError",
    "ParityReport",
    "check_parity",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "load_exported",
    "load_onnx",
    "load_torchscript",
    "parity_images",
]

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
META_KEY = "headstart"
"""ONNX metadata key holding the JSON description (TorchScript: the extra file ``TS_EXTRA``)."""
TS_EXTRA = "headstart.json"
EXPORT_FORMAT = "headstart-export"
DEFAULT_TOLERANCE = 1e-3


class ParityError(ModelError):
    """An exported model does not reproduce the PyTorch model's outputs."""


@dataclass(frozen=True)
class ParityReport:
    """How closely an exported model matches the PyTorch model on the same inputs.

    Attributes:
        num_images: Images compared.
        top1_agreement: Fraction of images whose top-1 class is the same (1.0 is required).
        max_abs_diff: Largest absolute logit difference.
        tolerance: Largest allowed ``max_abs_diff``.
        images: Where the images came from ("validation split", "generated", ...).
    """

    num_images: int
    top1_agreement: float
    max_abs_diff: float
    tolerance: float
    images: str = "given"

    @property
    def passed(self) -> bool:
        """Whether every top-1 agrees and every logit is within the tolerance."""
        return self.top1_agreement == 1.0 and self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class ExportResult:
    """The written file and its parity check."""

    path: Path
    format: str
    parity: ParityReport


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


def _atomic_target(path: Path) -> tuple[Path, Path]:
    """Return (final path, temporary path beside it); the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return path, Path(tmp)


def _example_input(pre: PreprocessSpec, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, pre.input_size, pre.input_size, generator=generator)


def export_onnx(
    loaded: LoadedModel, path: str | Path, *, opset: int = 17, dynamic_batch: bool = True
) -> Path:
    """Write ``loaded`` as a single-file ONNX model (no external data), atomically.

    Args:
        loaded: The model to export; it is put in eval mode.
        path: Output file.
        opset: ONNX opset version.
        dynamic_batch: Let the batch dimension vary; otherwise it is fixed at 1.

    Raises:
        ModelError: The model cannot be exported (an unsupported operator, a bad opset).
    """
    import onnx

    model = loaded.model.eval()
    dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (_example_input(loaded.preprocessing, 2 if dynamic_batch else 1),),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise ModelError(
            f"cannot export {loaded.name} to ONNX with opset {opset}: {exc}; try another --opset "
            "or --format torchscript."
        ) from None
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, export_description(loaded)
    proto.doc_string = f"headstart export of {loaded.name} ({len(loaded.classes)} classes)"
    onnx.checker.check_model(proto)
    final, tmp = _atomic_target(Path(path))
    try:
        tmp.write_bytes(proto.SerializeToString())
        tmp.chmod(0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def export_torchscript(loaded: LoadedModel, path: str | Path) -> Path:
    """Write ``loaded`` as a traced TorchScript file with its description, atomically.

    Raises:
        ModelError: The model cannot be traced.
    """
    model = loaded.model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (_example_input(loaded.preprocessing, 2),))
    except Exception as exc:  # noqa: BLE001 - tracing raises many types
        raise ModelError(
            f"cannot trace {loaded.name} to TorchScript: {exc}; try --format onnx."
        ) from None
    final, tmp = _atomic_target(Path(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(traced, str(tmp), _extra_files={TS_EXTRA: export_description(loaded)})
        tmp.chmod(0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


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
    return load_torchscript(path) if _is_zip(path) else load_onnx(path)


def _run_exported(path: Path, images: torch.Tensor) -> torch.Tensor:
    if not _is_zip(path):
        return OnnxModel(path)(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.inference_mode():
        return model(images)


def _is_zip(path: Path) -> bool:
    """Tell TorchScript (a zip archive) from ONNX (protobuf) by content, not by name."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"PK"
    except OSError as exc:
        raise ModelError(f"cannot read exported model {path}: {exc}") from None


def check_parity(
    loaded: LoadedModel,
    exported_path: str | Path,
    images: torch.Tensor,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    source: str = "given",
) -> ParityReport:
    """Run the PyTorch model and the exported file on the same preprocessed images and compare.

    Args:
        loaded: The reference model.
        exported_path: An ``.onnx`` or TorchScript file.
        images: Preprocessed images (N, 3, H, W), e.g. from ``parity_images``.
        tolerance: Largest allowed absolute logit difference.
        source: Where the images came from, recorded on the report.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ModelError("the parity check needs a non-empty (N, 3, H, W) batch of images.")
    with torch.inference_mode():
        reference = loaded.model.eval()(images).float()
    exported = _run_exported(Path(exported_path), images).float()
    if exported.shape != reference.shape:
        raise ParityError(
            f"the exported model returns shape {tuple(exported.shape)}, the PyTorch model "
            f"{tuple(reference.shape)}; re-export it."
        )
    agree = (exported.argmax(1) == reference.argmax(1)).float().mean().item()
    diff = (exported - reference).abs().max().item()
    return ParityReport(len(images), agree, diff, tolerance, source)


def _split_files(run_dir: Path | None) -> list[str]:
    from headstart.data.folders import read_splits

    if run_dir is None:
        return []
    for folder in (run_dir, run_dir.parent):
        if (folder / "splits.json").is_file():
            splits = read_splits(folder / "splits.json")
            samples = splits.val or splits.test or splits.train
            return [s.path for s in samples]
    return []


def parity_images(
    loaded: LoadedModel, run_dir: str | Path | None = None, *, count: int = 16, seed: int = 0
) -> tuple[torch.Tensor, str]:
    """Preprocessed images for a parity check, and where they came from.

    Uses up to ``count`` readable images of the run's validation split (``splits.json``) when
    there is one, else generated noise images encoded as PNG and decoded by the usual function.
    """
    from PIL import Image

    tensors = []
    for file in _split_files(Path(run_dir) if run_dir is not None else None):
        try:
            tensors.append(image_to_tensor(file, loaded.preprocessing))
        except DataError:
            continue
        if len(tensors) >= count:
            break
    if tensors:
        return torch.stack(tensors), "validation split"
    rng = np.random.default_rng(seed)
    side = loaded.preprocessing.resize_size + 7
    for _ in range(count):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (side, side + 5, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, format="PNG")
        tensors.append(image_to_tensor(buf.getvalue(), loaded.preprocessing))
    return torch.stack(tensors), "generated"


_EXPORTERS: dict[str, Callable[..., Path]] = {
    "onnx": lambda loaded, path, **kw: export_onnx(loaded, path, **kw),
    "torchscript": lambda loaded, path, **kw: export_torchscript(loaded, path),
}


def default_export_path(ref: str | Path, fmt: str) -> Path:
    """``RUN/model/model.onnx`` (or ``model.ts``) for a run or model folder."""
    model_dir = find_model_dir(ref)
    if model_dir is None:
        raise ModelError(f"{ref} is not a run or model folder; pass --out FILE to export it.")
    return model_dir / f"model{SUFFIXES[fmt]}"


def export_model(
    ref: str | Path,
    *,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    num_images: int = 16,
    loaded: LoadedModel | None = None,
) -> ExportResult:
    """Export a run (or model folder) and keep the file only if it passes the parity check.

    The file is written beside ``out`` under a temporary name, checked, then renamed into place,
    so a failed export never replaces a good file.

    Raises:
        ParityError: The export disagrees with the PyTorch model (nothing is written).
        ModelError: The model cannot be loaded or exported.
    """
    from headstart.artifact import load_model

    if fmt not in EXPORT_FORMATS:
        raise ModelError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}.")
    if tolerance <= 0:
        raise ModelError(f"the parity tolerance must be positive, got {tolerance}.")
    target = Path(out) if out is not None else default_export_path(ref, fmt)
    loaded = loaded if loaded is not None else load_model(ref)
    images, source = parity_images(loaded, find_model_dir(ref), count=num_images)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        _EXPORTERS[fmt](loaded, tmp, opset=opset, dynamic_batch=dynamic_batch)
        report = check_parity(loaded, tmp, images, tolerance=tolerance, source=source)
        if not report.passed:
            raise ParityError(
                f"the {fmt} export of {loaded.name} does not match the PyTorch model: top-1 "
                f"agreement {report.top1_agreement:.1%}, max |logit diff| "
                f"{report.max_abs_diff:.2e} (tolerance {tolerance:g}); nothing was written. "
                "Try another --opset or --format, or raise --tolerance if the gap is benign."
            )
        tmp.chmod(0o644)  # mkstemp creates 0600 files
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(path=target, format=fmt, parity=report)


def describe(path: str | Path) -> dict[str, Any]:
    """The JSON description stored in an exported file."""
    return dict(load_exported(path).meta)
