"""A torch Dataset over samples, decoding each image with ``decode_image``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from headstart.data.folders import Sample
from headstart.data.images import DEFAULT_MAX_PIXELS, decode_image

__all__ = ["ImageDataset"]


class ImageDataset(Dataset):
    """Yields ``(transform(image), label)`` for each sample.

    Args:
        samples: The image files and their labels.
        transform: Applied to the decoded RGB PIL image (e.g. ``build_eval_transform(spec)``).
        max_pixels: See ``decode_image``.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Any], Any],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample = self.samples[index]
        image = decode_image(sample.path, max_pixels=self.max_pixels)
        return self.transform(image), sample.label

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order (for samplers and class weights)."""
        return [s.label for s in self.samples]
