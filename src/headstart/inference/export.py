"""Export a trained model to ONNX or TorchScript, checked against the PyTorch model first.

An export is built in memory, loaded back from those bytes and compared with the PyTorch model on
real (or generated) preprocessed images; only when it matches is it written, with the one atomic
write (``files.atomic_write``, mode 0644). A file that disagrees is never written. The files carry
their description (classes, preprocessing; see ``headstart.inference.exported``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError, ModelError
from headstart.files import atomic_write, refuse_inside
from headstart.inference.device import Device
from headstart.inference.exported import (
    META_KEY,
    TS_EXTRA,
    export_description,
    is_export_file,
    is_exported,
    load_exported_bytes,
)
from headstart.inference.load import find_model_dir, load_model
from headstart.inference.predict import ModelRunner, decode_one
from headstart.preprocessing import PreprocessSpec
from headstart.run_folder import RunFolder

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "ParityError",
    "ParityReport",
    "build_export",
    "build_onnx",
    "build_torchscript",
    "check_export_target",
    "check_parity",
    "export_model",
    "parity_images",
]

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
DEFAULT_TOLERANCE = 1e-3
_NOISE_SEED = 0


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


def _example_input(loaded: LoadedModel, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    size = loaded.preprocessing.input_size
    return torch.randn(batch, 3, size, size, generator=generator).to(loaded.device)


def build_onnx(loaded: LoadedModel, *, opset: int = 17, dynamic_batch: bool = True) -> bytes:
    """``loaded`` as a single-file ONNX model (no external data) with its description.

    Args:
        loaded: The model to export; it is put in eval mode.
        opset: ONNX opset version.
        dynamic_batch: Let the batch dimension vary; otherwise it is fixed at 1.

    Raises:
        ModelError: The model cannot be exported (an unsupported operator, a bad opset).
    """
    import onnx

    _check_opset(opset)
    model = loaded.model.eval()
    dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (_example_input(loaded, 2 if dynamic_batch else 1),),
                buffer,  # type: ignore[arg-type]  # file objects work; the stub says paths
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
    return proto.SerializeToString()


def _check_opset(opset: int) -> None:
    """Refuse an opset this torch cannot write before the exporter dumps its graph to stderr."""
    from torch.onnx import _constants  # the exporter's own bounds; absent in some versions

    low = getattr(_constants, "ONNX_MIN_OPSET", 7)
    high = getattr(_constants, "ONNX_MAX_OPSET", None)
    if opset < low or (high is not None and opset > high):
        newest = f"{high}" if high is not None else "the newest it supports"
        raise ModelError(
            f"opset {opset} is not one this torch can export; choose an --opset from {low} to "
            f"{newest} (17, the default, suits most runtimes)."
        )


def build_torchscript(loaded: LoadedModel) -> bytes:
    """``loaded`` traced to a TorchScript archive with its description.

    Raises:
        ModelError: The model cannot be traced.
    """
    model = loaded.model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (_example_input(loaded, 2),))
    except Exception as exc:  # noqa: BLE001 - tracing raises many types
        raise ModelError(
            f"cannot trace {loaded.name} to TorchScript: {exc}; try --format onnx."
        ) from None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, buffer, _extra_files={TS_EXTRA: export_description(loaded)})
    return buffer.getvalue()


def build_export(
    loaded: LoadedModel, fmt: str, *, opset: int = 17, dynamic_batch: bool = True
) -> bytes:
    """The bytes of ``loaded`` exported as ``fmt`` (one of ``EXPORT_FORMATS``).

    ``opset`` and ``dynamic_batch`` apply to ONNX; a TorchScript trace takes any batch size.
    """
    _check_format(fmt)
    if fmt == "onnx":
        return build_onnx(loaded, opset=opset, dynamic_batch=dynamic_batch)
    return build_torchscript(loaded)


def check_parity(
    loaded: LoadedModel,
    exported: LoadedModel,
    images: torch.Tensor,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    source: str = "given",
) -> ParityReport:
    """Run the PyTorch model and its export on the same preprocessed images and compare.

    Each runs on its own device; the logits are compared on the CPU.

    Args:
        loaded: The reference model.
        exported: The export, e.g. from ``load_exported`` or ``load_exported_bytes``.
        images: Preprocessed images (N, 3, H, W), e.g. from ``parity_images``.
        tolerance: Largest allowed absolute logit difference.
        source: Where the images came from, recorded on the report.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ModelError("the parity check needs a non-empty (N, 3, H, W) batch of images.")
    reference = ModelRunner(loaded).logits(images)
    got = ModelRunner(exported).logits(images)
    if got.shape != reference.shape:
        raise ParityError(
            f"the exported model returns shape {tuple(got.shape)}, the PyTorch model "
            f"{tuple(reference.shape)}; re-export it."
        )
    agree = (got.argmax(1) == reference.argmax(1)).float().mean().item()
    diff = (got - reference).abs().max().item()
    return ParityReport(len(images), agree, diff, tolerance, source)


def _split_files(folder: Path | None) -> list[str]:
    """Image files of the run that is or holds ``folder``: validation, else test, else train."""
    run = RunFolder.holding(folder) if folder is not None else None
    if run is None:
        return []
    splits = run.read_splits()
    return [s.path for s in splits.val or splits.test or splits.train]


def _noise_images(pre: PreprocessSpec, count: int) -> torch.Tensor:
    """``count`` random images, encoded as PNG and decoded by the one decode function."""
    from PIL import Image

    rng = np.random.default_rng(_NOISE_SEED)
    side = pre.resize_size + 7
    tensors = []
    for _ in range(count):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (side, side + 5, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, format="PNG")
        tensors.append(image_to_tensor(buf.getvalue(), pre))
    return torch.stack(tensors)


def parity_images(
    loaded: LoadedModel, folder: str | Path | None = None, *, count: int = 16
) -> tuple[torch.Tensor, str]:
    """Preprocessed images for a parity check, and where they came from.

    Uses up to ``count`` readable images of the validation split (``splits.json``) of the run
    that ``folder`` is or holds the model of, else generated noise images.
    """
    tensors = []
    for file in _split_files(Path(folder) if folder is not None else None):
        tensor, _ = decode_one(file, loaded.preprocessing)  # unreadable ones are left out
        if tensor is not None:
            tensors.append(tensor)
        if len(tensors) >= count:
            break
    if tensors:
        return torch.stack(tensors), "validation split"
    return _noise_images(loaded.preprocessing, count), "generated"


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ModelError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}.")


def _exportable(model: str | Path | LoadedModel, device: Device) -> LoadedModel:
    """The PyTorch model to export (an exported file cannot be exported again)."""
    if not isinstance(model, LoadedModel) and Path(model).is_file():
        raise ModelError(
            f"{model} is already an exported file; export the run or model folder it came from."
        )
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    if is_exported(loaded):
        raise ModelError(f"{loaded.name} is an exported model; export its run or model folder.")
    return loaded


def check_export_target(target: str | Path, fmt: str = "onnx") -> None:
    """Raise unless ``target`` may be written: a new file, or an export headstart wrote.

    Raises:
        ConfigError: ``target`` is a folder, or a file that is not a headstart export.
    """
    target = Path(target)
    if target.is_dir():
        example = target / f"model{SUFFIXES.get(fmt, '.onnx')}"
        raise ConfigError(
            f"--out {target} is a folder; give the file to write, e.g. --out {example}."
        )
    if target.exists() and not is_export_file(target):
        raise ConfigError(
            f"--out {target} exists and is not a headstart export; headstart never overwrites "
            "your files: choose another --out, or move the file away first."
        )


def _refuse_inside_training_data(target: Path, model_dir: Path | None) -> None:
    """An export of a run never goes into the image folders the run was trained on."""
    run = RunFolder.holding(model_dir) if model_dir is not None else None
    for root in run.read_splits().image_roots() if run is not None else ():
        refuse_inside(target, root)


def _write(target: Path, data: bytes) -> Path:
    """Write the checked export once, or say in one line why it cannot be written."""
    try:
        return atomic_write(target, data)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the export to {target}: {exc.strerror or exc}; choose a writable --out."
        ) from None


def export_model(
    model: str | Path | LoadedModel,
    *,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    num_images: int = 16,
    device: Device = "cpu",
) -> ExportResult:
    """Export a run, a model folder or a loaded model; write it only if it passes the parity check.

    Args:
        model: A run folder, a model folder, a zoo name, or a loaded model (then ``out`` is
            needed and the parity images are generated).
        fmt: One of ``EXPORT_FORMATS``.
        out: The file to write [default: the model folder's ``model.onnx`` / ``model.ts``].
        opset: ONNX opset version.
        dynamic_batch: Let the ONNX batch dimension vary; otherwise it is fixed at 1.
        tolerance: Largest allowed absolute logit difference.
        num_images: Images used for the parity check.
        device: Where the PyTorch model loads and runs for the check (a model reference only).

    Raises:
        ParityError: The export disagrees with the PyTorch model (nothing is written).
        ModelError: The model cannot be loaded or exported, or there is nowhere to write it.
        ConfigError: ``out`` is a folder, a file headstart did not write, or cannot be written.
    """
    _check_format(fmt)
    if tolerance <= 0:
        raise ModelError(f"the parity tolerance must be positive, got {tolerance}.")
    folder = None if isinstance(model, LoadedModel) else find_model_dir(model)
    if out is not None:
        target = Path(out)
    elif folder is not None:
        target = folder / f"model{SUFFIXES[fmt]}"
    else:
        label = model.name if isinstance(model, LoadedModel) else model
        raise ModelError(f"{label} is not a run or model folder; pass --out FILE to export it.")
    check_export_target(target, fmt)
    _refuse_inside_training_data(target, folder)
    loaded = _exportable(model, device)
    data = build_export(loaded, fmt, opset=opset, dynamic_batch=dynamic_batch)
    exported = load_exported_bytes(data, origin=f"the new {fmt} export of {loaded.name}")
    images, source = parity_images(loaded, folder, count=num_images)
    report = check_parity(loaded, exported, images, tolerance=tolerance, source=source)
    if not report.passed:
        raise ParityError(
            f"the {fmt} export of {loaded.name} does not match the PyTorch model: top-1 "
            f"agreement {report.top1_agreement:.1%}, max |logit diff| "
            f"{report.max_abs_diff:.2e} (tolerance {tolerance:g}); nothing was written. "
            "Try another --opset or --format, or raise --tolerance if the gap is benign."
        )
    return ExportResult(path=_write(target, data), format=fmt, parity=report)
