"""Export a trained model to ONNX or TorchScript, and check that the export computes the same thing.

Both formats carry the class names and the preprocessing spec as JSON (ONNX ``metadata_props``,
TorchScript ``_extra_files``), so an exported file is enough to predict. Every export is followed
by a parity check on real (or generated) preprocessed images: a file that disagrees with the
PyTorch model is never left behind.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import DataError, ModelError
from headstart.inference.exported import META_KEY, TS_EXTRA, export_description, run_exported
from headstart.preprocessing import PreprocessSpec
from headstart.run_folder import RunFolder

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "ParityError",
    "ParityReport",
    "check_parity",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "parity_images",
]

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
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
    exported = run_exported(Path(exported_path), images).float()
    if exported.shape != reference.shape:
        raise ParityError(
            f"the exported model returns shape {tuple(exported.shape)}, the PyTorch model "
            f"{tuple(reference.shape)}; re-export it."
        )
    agree = (exported.argmax(1) == reference.argmax(1)).float().mean().item()
    diff = (exported - reference).abs().max().item()
    return ParityReport(len(images), agree, diff, tolerance, source)


def _split_files(model_dir: Path | None) -> list[str]:
    """Image files of the run that holds ``model_dir``: validation, else test, else train."""
    run = RunFolder.holding(model_dir) if model_dir is not None else None
    if run is None:
        return []
    splits = run.read_splits()
    return [s.path for s in splits.val or splits.test or splits.train]


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
    from headstart.inference.load import find_model_dir

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
    from headstart.inference.load import find_model_dir, load_model

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
