"""Architecture rules, checked on the source: layers, no import cycles, no printing below the CLI.

Every module under src/headstart (sub-packages included) belongs to the unit of its first path
part; a unit may import units of lower layers and its own modules, never a unit of its own layer
or above. The module graph (imports in function bodies and under TYPE_CHECKING included) must have
no cycle. docs/ARCHITECTURE.md describes the layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"

LAYERS = {
    "errors": 0, "started": 0, "processes": 0, "progress": 0, "defaults": 0,
    "config": 1, "files": 1, "preprocessing": 1,
    "zoo": 2, "data": 2,
    "surgery": 3, "speed": 3, "evaluation": 3,
    "run_folder": 4, "artifact": 4,
    "training": 5, "inference": 5,
    "pipeline": 6,
    "classifier": 7,
    "cli": 8,
    "__main__": 9,
}  # fmt: skip
"""Lowest first. Units on one layer are siblings: they never import each other."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str) -> set[str]:
    """headstart modules imported anywhere in ``module`` (function bodies, TYPE_CHECKING too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        found.update(_resolve(name) for name in names if name.startswith("headstart"))
    found.discard("")
    found.discard(module)
    return found


def _resolve(name: str) -> str:
    """The module ``name`` refers to (an imported name resolves to its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


GRAPH = {module: _imports(module) for module in MODULES}
UNITS = [m for m in MODULES if m != "headstart"]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in UNITS}
    assert units <= set(LAYERS), f"give these a layer in this test: {units - set(LAYERS)}"


@pytest.mark.parametrize("module", UNITS)
def test_imports_respect_layers(module: str) -> None:
    unit = _unit(module)
    for target in GRAPH[module]:
        other = _unit(target)
        if other == unit or target == "headstart":
            continue
        assert other in LAYERS, f"{module}: unknown unit {other}"
        assert LAYERS[other] < LAYERS[unit], (
            f"{module} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS[other]}); "
            "a unit may only import lower layers"
        )


def _cycles() -> list[list[str]]:
    """Import cycles of the module graph (one per strongly connected component)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_cycle_detection_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    monkeypatch.setattr(sys.modules[__name__], "GRAPH", graph)
    assert _cycles() == [["a", "b", "c"]]


def test_layer_check_sees_inside_sub_packages() -> None:
    assert "headstart.data.audit.audit" in GRAPH
    assert any(_unit(t) == "data" for t in GRAPH["headstart.training.features"])


@pytest.mark.parametrize("module", [m for m in UNITS if _unit(m) not in ("cli", "__main__")])
def test_only_cli_prints_or_exits(module: str) -> None:
    path = MODULES[module]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            owner = getattr(getattr(func, "value", None), "id", "")
            assert name != "print", f"{path}:{node.lineno} prints; return values or log instead"
            assert not (owner == "sys" and name == "exit"), f"{path}:{node.lineno} exits"


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_headstart_does_not_import_torch() -> None:
    assert "torch" not in _loaded_after("import headstart")


def test_cli_help_does_not_import_torch() -> None:
    loaded = _loaded_after("from headstart.cli.main import app")
    assert not {"torch", "timm"} & loaded


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(GRAPH.get(module, ()))
    return seen


@pytest.mark.parametrize(
    "command", ["predict", "evaluate", "export", "serve", "models", "check"]
)
def test_inference_commands_never_import_training(command: str) -> None:
    """Every import these commands can reach, in any function body: none is training code."""
    reached = _reachable(f"headstart.cli.{command}")
    assert not sorted(m for m in reached if _unit(m) in ("training", "pipeline"))


def test_embed_reaches_training_only_through_the_feature_cache() -> None:
    """``headstart embed`` runs the frozen body through training's feature cache, nothing else of
    training (no engine, loop or Fabric): pipeline/embed.py says why it sits on layer 6."""
    reached = _reachable("headstart.cli.embed")
    assert "headstart.training.features" in reached
    assert sorted(m for m in reached if _unit(m) == "training") == ["headstart.training.features"]
    assert sorted(m for m in reached if _unit(m) == "pipeline") == [
        "headstart.pipeline.embed",
        "headstart.pipeline.embed_file",
    ]
