"""Shared fixtures for the zoo tests (all offline)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def lite0():
    """The default model with its real bundled ImageNet weights."""
    from headstart.zoo import create_backbone

    return create_backbone("bundled:efficientnet_lite0")
