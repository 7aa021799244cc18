"""The devices training runs on: a Lightning Fabric for the accelerator and precision settings."""

from __future__ import annotations

from typing import Any

from lightning_fabric import Fabric

from headstart.errors import ConfigError

__all__ = ["create_fabric"]


def create_fabric(accelerator: str, precision: str) -> Fabric:
    """A one-device Fabric; ``precision="auto"`` makes a float32 one (the phases then autocast as
    their speed trial decides)."""
    try:
        fabric_precision: Any = "32-true" if precision == "auto" else precision
        return Fabric(accelerator=accelerator, devices=1, precision=fabric_precision)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"cannot use accelerator {accelerator!r} with precision {precision!r}: {exc}; try "
            "--accelerator cpu --precision 32-true."
        ) from None
