"""The reliability corpus of benchmarks/reliability_corpus.py, shared by the audit tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "reliability_corpus.py"


@pytest.fixture
def bench() -> ModuleType:
    """The benchmark module: ``build_corpus``, ``snapshot`` and ``score``."""
    if "reliability_corpus" not in sys.modules:
        spec = importlib.util.spec_from_file_location("reliability_corpus", _BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["reliability_corpus"] = module
        spec.loader.exec_module(module)
    return sys.modules["reliability_corpus"]
