"""When this process first imported headstart: a command's ``--budget`` counts from here."""

from __future__ import annotations

import time

__all__ = ["AT"]

AT = time.monotonic()
"""``time.monotonic()`` at headstart's first import (the package imports this module first)."""
