"""Size rules from the issue that set the house in order: small modules, short functions.

A module may have about 450 lines; a function about 60 lines of code (its docstring not counted).
A longer function says why on the line above its ``def`` (or its first decorator) in a comment
starting ``# long:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"
MODULES = sorted(SRC.rglob("*.py"))
MAX_MODULE_LINES = 460
MAX_FUNCTION_LINES = 60


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1  # type: ignore[operator]
    return lines


def _has_reason(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return start >= 2 and lines[start - 2].strip().startswith("# long:")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_and_function_sizes(path: Path) -> None:
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path}: {len(lines)} lines; split it by job"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            count = _code_lines(node)
            assert count <= MAX_FUNCTION_LINES or _has_reason(lines, node), (
                f"{path}:{node.lineno} {node.name} has {count} lines of code; split it, or say "
                "why it is long in a '# long:' comment above it"
            )


def test_the_rule_catches_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    for source, excused in ((f"def f():\n{body}\n", False),
                            (f"# long: a table\ndef f():\n{body}\n", True)):  # fmt: skip
        node = ast.parse(source).body[0]
        assert isinstance(node, ast.FunctionDef) and _code_lines(node) > MAX_FUNCTION_LINES
        assert _has_reason(source.splitlines(), node) is excused
