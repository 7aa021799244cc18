"""Embeddings: one vector per image, the frozen pretrained body's output that the head would see.

A class-folder tree (``DATA/<class>/*``, or ``DATA/train|val|test/<class>/*``) gives each image
its class; a folder of images without class folders gives none. The body runs through the
feature cache (``training.features``), so embedding the same images with the same model again
reads the vectors back instead of running the network. This lives in ``pipeline`` because it
needs both the feature cache (training's) and the device check (inference's), two siblings on
layer 5 that may not import each other.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headstart.data.class_folders import (
    check_data_folder,
    list_class_images,
    list_images,
    visible_entries,
)
from headstart.data.folders import VAL_NAMES, Sample
from headstart.data.walk import make_fence
from headstart.data.written import not_data_reason
from headstart.defaults import INFERENCE_BATCH_SIZE
from headstart.errors import ConfigError, DataError
from headstart.inference.device import AUTO_DEVICE, Device, resolve_device
from headstart.preprocessing import PreprocessSpec

__all__ = ["NO_CLASS", "Embeddings", "embed_folder", "embed_samples"]

log = logging.getLogger(__name__)

NO_CLASS = -1
"""The label of an image outside any class folder."""
_SPLITS = ("train", *VAL_NAMES, "test")


@dataclass
class Embeddings:
    """The vectors of a folder's images, with where each came from.

    Attributes:
        vectors: (N, D) float32, row i for ``paths[i]``.
        paths: The image files, absolute.
        labels: Index into ``classes`` per image, ``NO_CLASS`` (-1) for an image without a class.
        classes: Class folder names, sorted; empty for a folder of images without classes.
        model: Canonical name of the model.
        preprocessing: How the images were prepared (after ``image_size``).
        device: Where the body ran.
        from_cache: Whether the vectors came from the feature cache (the body did not run).
        seconds: Time taken, model building excluded.
        skipped: Path -> reason for images that could not be read (they have no row).
    """

    vectors: np.ndarray
    paths: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    model: str
    preprocessing: PreprocessSpec
    device: str
    from_cache: bool
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)

    def label_names(self) -> list[str | None]:
        """The class name of each image, None for an image without a class."""
        return [self.classes[i] if i != NO_CLASS else None for i in self.labels.tolist()]


def embed_samples(data: str | Path) -> tuple[list[Sample], tuple[str, ...]]:
    """The images of ``data`` with their class indices, and the class names.

    ``DATA/train|val|test/<class>/*`` and ``DATA/<class>/*`` give classes (the union over the
    splits, sorted); a folder with no sub-folders gives its images with ``NO_CLASS``.

    Raises:
        DataError: The folder is missing, empty, or a class folder holds no images.
    """
    root = Path(data).expanduser().absolute()
    check_data_folder(root)
    folders = [p for p in visible_entries(root) if p.is_dir() and not not_data_reason(p)]
    splits = [p for p in folders if p.name in _SPLITS]
    if splits:
        fence = make_fence(root, splits)
        per_class: dict[str, list[Path]] = {}
        for split in sorted(splits):
            for name, files in list_class_images(split, fence).items():
                per_class.setdefault(name, []).extend(files)
    elif folders:
        per_class = list_class_images(root)
    else:
        return [Sample(str(p), NO_CLASS) for p in list_images(root)], ()
    classes = tuple(sorted(per_class))
    samples = [Sample(str(p), i) for i, name in enumerate(classes) for p in per_class[name]]
    return samples, classes


def embed_folder(
    data: str | Path,
    model: str,
    *,
    image_size: int | None = None,
    batch_size: int = INFERENCE_BATCH_SIZE,
    device: Device = AUTO_DEVICE,
    weights_file: str | Path | None = None,
    cache_root: Path | None = None,
) -> Embeddings:
    """Embed every image of ``data`` with the pretrained body of ``model``.

    Args:
        data: A class-folder tree or a folder of images.
        model: Zoo name (``bundled:``, ``tv:``, ``timm:``, ``hf-hub:``).
        image_size: Input size instead of the weights' own.
        batch_size: Images per forward pass.
        device: Where the body runs (``auto``: CUDA, else MPS, else the CPU).
        weights_file: Local weights to load instead of the published ones.
        cache_root: Folder of feature-cache entries (default ``cache_dir()/features``).

    Raises:
        DataError: The folder cannot be used, or none of its images can be read.
        ModelError: The model cannot be built.
        ConfigError: ``device`` is not available, or ``image_size`` does not suit the model.
    """
    from headstart.training.features import extract_features
    from headstart.zoo import create_backbone

    target = resolve_device(device)
    samples, classes = embed_samples(data)
    network, spec = create_backbone(model, pretrained=True, weights_file=weights_file)
    pre = spec.preprocessing
    if image_size is not None and image_size != pre.input_size:
        if spec.fixed_input_size:
            raise ConfigError(
                f"{spec.name} runs at {pre.input_size} px only; drop --image-size {image_size} "
                f"or use --image-size {pre.input_size}."
            )
        pre = pre.with_size(image_size)
    start = time.perf_counter()
    network.to(target)
    found = extract_features(network, spec, samples, pre, batch_size=batch_size, root=cache_root)
    keep = [i for i, s in enumerate(samples) if s.path not in found.failures]
    if not keep:
        first = next(iter(found.failures.items()))
        raise DataError(f"none of the {len(samples)} images could be read (first: {first[1]}).")
    return Embeddings(
        vectors=np.asarray(found.features[keep], dtype=np.float32),
        paths=tuple(samples[i].path for i in keep),
        labels=np.array([samples[i].label for i in keep], dtype=np.int64),
        classes=classes,
        model=spec.name,
        preprocessing=pre,
        device=str(target),
        from_cache=found.from_cache,
        seconds=time.perf_counter() - start,
        skipped=dict(found.failures),
    )
