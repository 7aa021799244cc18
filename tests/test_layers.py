"""Architecture rules from DESIGN.md, checked on the source: layers, no printing below the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"

LAYERS = {
    "errors": 0, "config": 0, "preprocessing": 0, "paths": 0,
    "zoo": 1, "data": 1,
    "surgery": 2, "metrics": 2,
    "training": 3,
    "artifact": 4, "evaluation": 4, "prediction": 4, "fitting": 4, "classifier": 4,
    "report": 4, "plots": 4, "export": 4, "serve": 4,
    "cli": 5, "__main__": 5,
}  # fmt: skip


def _unit(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level headstart units imported anywhere in the file (function bodies included)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "headstart" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = [p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in MODULES}
    assert units <= set(LAYERS), f"give these a layer in this test: {units - set(LAYERS)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_respect_layers(path: Path) -> None:
    unit = _unit(path)
    for target in _imports(path):
        assert target in LAYERS, f"{path}: unknown unit {target}"
        assert LAYERS[target] <= LAYERS[unit], f"{unit} (layer {LAYERS[unit]}) imports {target}"
        assert {unit, target} != {"zoo", "data"}, f"{path}: zoo and data must not import each other"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _unit(p) not in ("cli", "__main__")], ids=str
)
def test_only_cli_prints_or_exits(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            owner = getattr(getattr(func, "value", None), "id", "")
            assert name != "print", f"{path}:{node.lineno} prints; return values or log instead"
            assert not (owner == "sys" and name == "exit"), f"{path}:{node.lineno} exits"


def test_import_headstart_does_not_import_torch() -> None:
    code = "import sys, headstart; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom headstart.cli.main import app\n"
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
