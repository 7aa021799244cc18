"""Loading any model reference: a run folder, a model folder, an exported file or a zoo name."""

from __future__ import annotations

from pathlib import Path

from headstart.artifact import LoadedModel, is_model_dir, load_model_dir
from headstart.errors import ConfigError, ModelError
from headstart.inference.device import AUTO_DEVICE, Device, resolve_device
from headstart.inference.exported import load_exported
from headstart.run_folder import RunFolder

__all__ = ["find_model_dir", "load_model"]


def find_model_dir(ref: str | Path) -> Path | None:
    """The model folder that ``ref`` is or holds (a run folder's ``model/``), else None."""
    path = Path(ref)
    if is_model_dir(path):
        return path
    inside = RunFolder(path).model_dir
    return inside if is_model_dir(inside) else None


def load_model(
    ref: str | Path, *, image_size: int | None = None, device: Device = "cpu"
) -> LoadedModel:
    """Load a run folder, a model folder, an exported ``.onnx`` / TorchScript file, or a zoo name.

    A zoo name gives the pretrained model with its ImageNet classes.

    Args:
        ref: What to load.
        image_size: Run the model at this input size instead of the one it was trained at
            (not for exported files, whose input size is fixed).
        device: Where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); ONNX
            exports run on the CPU only.

    Raises:
        ModelError: ``ref`` is none of these, or cannot be loaded.
        ConfigError: ``device`` is not available here (the message lists those that are).
    """
    target = resolve_device(device)  # before any weights are read
    if Path(ref).is_file():
        if image_size is not None:
            raise ModelError(
                f"{ref} is an exported model with a fixed input size; drop image_size."
            )
        if device == AUTO_DEVICE and target.type != "cpu":
            try:
                return load_exported(ref, device=target)
            except ConfigError:  # an ONNX export runs on the CPU only
                return load_exported(ref, device="cpu")
        return load_exported(ref, device=target)
    if Path(ref).exists():
        model_dir = find_model_dir(ref)
        if model_dir is None:
            raise ModelError(
                f"{ref} is not a headstart model: expected headstart.json in it or in its model/ "
                "folder (a run folder from `headstart train`, or a folder written by "
                "ImageClassifier.save)."
            )
        loaded = load_model_dir(model_dir)
    else:
        loaded = _load_zoo_model(str(ref))
    if image_size is not None:
        loaded.preprocessing = loaded.preprocessing.with_size(image_size)
    loaded.model.to(target)
    return loaded


def _load_zoo_model(name: str) -> LoadedModel:
    from headstart.zoo import create_backbone

    try:
        model, spec = create_backbone(name, pretrained=True)
    except ModelError as exc:
        raise ModelError(
            f"{name} is neither an existing run/model folder nor a usable model name: {exc}"
        ) from None
    if not spec.categories:
        raise ModelError(
            f"{spec.name} has no pretrained class names to predict with; train it first with "
            "`headstart train`."
        )
    return LoadedModel(
        model=model.eval(),
        classes=tuple(spec.categories),
        preprocessing=spec.preprocessing,
        name=spec.name,
    )
