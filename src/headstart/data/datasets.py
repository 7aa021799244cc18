"""A torch Dataset over samples, decoding each image with ``decode_image``.

A file that breaks after the data audit (deleted, truncated or replaced mid-run) does not stop the
run: the dataset logs its path and reason once, records it in ``failures`` and yields the next
sample (index + 1, wrapping around) that decodes instead. The substitute depends only on the index,
so a run stays deterministic. With DataLoader workers, each worker process keeps its own
``failures``; the log lines still name every file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from headstart.data.folders import Sample
from headstart.data.images import DEFAULT_MAX_PIXELS, decode_image
from headstart.errors import DataError

__all__ = ["ImageDataset"]

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Yields ``(transform(image), label)`` for each sample.

    Args:
        samples: The image files and their labels.
        transform: Applied to the decoded RGB PIL image (e.g. ``build_eval_transform(spec)``).
        max_pixels: See ``decode_image``.

    Attributes:
        failures: Path -> reason for every file that failed to decode and was substituted.
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
        self.failures: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self.samples)
        for step in range(n):
            sample = self.samples[(index + step) % n]
            if sample.path in self.failures:
                continue
            try:
                image = decode_image(sample.path, max_pixels=self.max_pixels)
            except DataError as exc:
                self._record_failure(sample.path, str(exc))
                continue
            return self.transform(image), sample.label
        raise DataError(
            f"none of the {n} images of this dataset can be read any more (e.g. "
            f"{next(iter(self.failures), 'none')}); check that the data folder is still there."
        )

    def _record_failure(self, path: str, reason: str) -> None:
        self.failures[path] = reason
        log.warning("skipping %s, which could not be read during training: %s", path, reason)

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order (for samplers and class weights)."""
        return [s.label for s in self.samples]
