"""README's command table and ``headstart --help`` name the same commands with the same words."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_table() -> dict[str, str]:
    text = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z-]+)` \| (.+?) \|$", text, flags=re.MULTILINE)
    return dict(rows)


def _help_lines() -> dict[str, str]:
    from headstart.cli.main import app

    lines = {}
    for command in app.registered_commands:
        first = (inspect.getdoc(command.callback) or "").split("\n\n")[0]
        lines[str(command.name)] = " ".join(first.split())
    for group in app.registered_groups:
        lines[str(group.name)] = str(group.typer_instance.info.help)
    return lines


def test_readme_command_table_matches_help() -> None:
    table, helps = _readme_table(), _help_lines()
    assert "embed" in helps and len(table) >= 10
    assert table == helps


def test_help_lists_embed() -> None:
    from tests.e2e_helpers import run_cli

    code, out, _ = run_cli(["--help"])
    assert code == 0 and "embed" in out and "Write one vector per image" in " ".join(out.split())
