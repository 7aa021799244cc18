"""The preprocessing spec that travels with a model from training to serving.

It lives below both ``zoo`` (which discovers it from pretrained weights) and ``data`` (which builds
transforms from it), so neither has to import the other. No torch import here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from headstart.errors import ConfigError

__all__ = ["INTERPOLATIONS", "PreprocessSpec"]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the tensor a model expects.

    Evaluation resizes the short side to ``input_size / crop_pct`` and centre-crops ``input_size``.

    Attributes:
        input_size: Side of the square crop fed to the model, in pixels.
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel standard deviation divided by after subtracting ``mean``.
        interpolation: Resize filter, one of ``INTERPOLATIONS``.
        crop_pct: Fraction of the resized image kept by the centre crop (0 < crop_pct <= 1).
    """

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ConfigError(f"image size {self.input_size} is too small; use at least 8 pixels.")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation {self.interpolation!r} is not supported; use one of "
                f"{', '.join(INTERPOLATIONS)}."
            )
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"crop fraction {self.crop_pct} must be in (0, 1].")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need three values each, and std must be positive.")

    @property
    def resize_size(self) -> int:
        """Short side after the evaluation resize, before the centre crop."""
        return int(round(self.input_size / self.crop_pct))

    def with_size(self, input_size: int | None) -> PreprocessSpec:
        """Return a copy with another input size (``None`` keeps this one)."""
        return self if input_size is None else replace(self, input_size=int(input_size))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict."""
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Build from the output of ``to_dict``."""
        return cls(
            input_size=int(data["input_size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data["interpolation"]),
            crop_pct=float(data["crop_pct"]),
        )
