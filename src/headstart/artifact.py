"""A trained model as a directory: ``model.safetensors`` + ``headstart.json``.

Loading never unpickles.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.errors import ModelError
from headstart.files import atomic_write, mark_folder
from headstart.preprocessing import PreprocessSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from headstart.zoo.spec import BackboneSpec

__all__ = [
    "FORMAT",
    "LoadedModel",
    "is_model_dir",
    "load_model_dir",
    "save_model_dir",
]

FORMAT = "headstart-model"
FORMAT_VERSION = 1
MODEL_KIND = "model"
"""The kind of the marker a model folder carries (see ``files.mark_folder``)."""
WEIGHTS_FILE = "model.safetensors"
META_FILE = "headstart.json"


@dataclass
class LoadedModel:
    """A ready-to-use classifier with everything needed to feed it images.

    Attributes:
        model: The network in eval mode, on the device it runs on (``load_model_dir`` loads on
            the CPU; ``headstart.inference.load.load_model`` moves it to the device asked for).
        classes: Class names in output order.
        preprocessing: The preprocessing the model was trained (or pretrained) with.
        name: Canonical zoo name of the architecture.
        meta: The full ``headstart.json`` content (empty for a zoo model; the export's
            description for an exported one).
    """

    model: nn.Module
    classes: tuple[str, ...]
    preprocessing: PreprocessSpec
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the model runs: the device of its weights (the CPU for a model without any,
        such as an ONNX Runtime session)."""
        import torch

        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            return tensor.device
        return torch.device("cpu")


def library_versions() -> dict[str, str]:
    """Versions of headstart and the libraries that shape a model's numbers."""
    out = {}
    for dist in ("headstart", "torch", "torchvision", "timm", "lightning-fabric"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def save_model_dir(
    path: str | Path,
    model: nn.Module,
    *,
    spec: BackboneSpec,
    classes: tuple[str, ...] | list[str],
    preprocessing: PreprocessSpec,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``headstart.json`` into ``path``.

    Both files are written atomically (``files.atomic_write``), so a crash leaves either the old
    or the new file, never half of one. Files get mode 0644 and the folders created 0755: a model
    is made to be shared and served. The folder is marked as a model folder; a folder holding
    files of those names that headstart did not write is refused.

    Raises:
        ModelError: ``path`` holds a ``model.safetensors`` or ``headstart.json`` of someone else's.
    """
    from safetensors.torch import save

    _refuse_foreign(Path(path))
    path = mark_folder(path, MODEL_KIND)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec.name,
        "source": spec.source,
        "arch": spec.arch,
        "classifier": spec.classifier,
        "num_features": spec.num_features,
        "classes": list(classes),
        "num_classes": len(classes),
        "preprocessing": preprocessing.to_dict(),
        "weights_license": spec.license,
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra or {})
    atomic_write(path / WEIGHTS_FILE, save(state, metadata={"format": FORMAT}))
    atomic_write(path / META_FILE, json.dumps(meta, indent=2, default=str) + "\n")
    return path


def _refuse_foreign(path: Path) -> None:
    """Never replace a user's files: only a model folder headstart wrote may be written again."""
    taken = [path / name for name in (WEIGHTS_FILE, META_FILE) if (path / name).exists()]
    if not taken:
        return
    try:
        ours = json.loads((path / META_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ModelError(
            f"{taken[0]} exists and was not written by headstart; save the model into another "
            "folder (headstart never overwrites your files)."
        )


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a model folder (it holds ``headstart.json``)."""
    return (Path(path) / META_FILE).is_file()


def read_meta(model_dir: Path) -> dict[str, Any]:
    """Read and check ``headstart.json``."""
    meta_path = model_dir / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_path} is not a readable headstart model file: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path} is not a headstart model description (no 'format' field).")
    for key in ("model", "classes", "preprocessing"):
        if key not in meta:
            raise ModelError(f"{meta_path} lacks the {key!r} field; re-save the model.")
    return meta


def load_model_dir(path: str | Path) -> LoadedModel:
    """Load a saved model folder (``model.safetensors`` + ``headstart.json``).

    Raises:
        ModelError: ``path`` is not a headstart model, or its weights do not fit its description.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from headstart.surgery import replace_head
    from headstart.zoo import create_backbone

    model_dir = Path(path)
    if not is_model_dir(model_dir):
        raise ModelError(
            f"{path} is not a headstart model folder: it holds no {META_FILE} (write one with "
            "`headstart train` or ImageClassifier.save)."
        )
    meta = read_meta(model_dir)
    classes = tuple(str(c) for c in meta["classes"])
    model, spec = create_backbone(meta["model"], pretrained=False)
    model = replace_head(model, spec, len(classes))
    weights = model_dir / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read weights {weights}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(
            f"weights {weights} do not fit {meta['model']} with {len(classes)} classes: "
            f"{first[1].strip() if len(first) > 1 else first[0]}"
        ) from None
    model.eval()
    pre = PreprocessSpec.from_dict(meta["preprocessing"])
    return LoadedModel(model=model, classes=classes, preprocessing=pre, name=spec.name, meta=meta)
