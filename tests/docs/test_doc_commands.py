"""Every ``kotaflow ...`` command the README and docs/ show exists, with the options shown.

Fast and without services: each command path runs ``--help`` in-process. All problems are
reported at once with file:line, so a docs writer fixes them in one go.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.docs.doc_commands import DocCommand, check, command_lines

REPO = Path(__file__).resolve().parents[2]


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _commands() -> list[DocCommand]:
    return [found for path in _documents() for found in command_lines(path)]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    from kotaflow.cli import app

    return app


def test_the_docs_show_kotaflow_commands() -> None:
    commands = _commands()
    assert len(commands) >= 10
    assert {c.file.name for c in commands} >= {"README.md"}


def test_every_command_in_the_docs_exists(app: typer.Typer) -> None:
    root = typer.main.get_command(app)
    runner = CliRunner()
    problems: list[str] = []
    helped: dict[tuple[str, ...], str] = {}
    for found in _commands():
        path, wrong = check(root, found.args)
        where = f"{found.file.relative_to(REPO)}:{found.line}: {found.text}"
        problems += [f"{where}\n    {problem}" for problem in wrong]
        key = tuple(path)
        if key not in helped:
            result = runner.invoke(app, [*path, "--help"])
            helped[key] = "" if result.exit_code == 0 else f"exit {result.exit_code}"
        if helped[key]:
            problems.append(f"{where}\n    `kotaflow {' '.join(path)} --help`: {helped[key]}")
    assert not problems, f"{len(problems)} doc command(s) do not match the CLI:\n" + "\n".join(
        problems
    )


def test_command_lines_are_found_where_a_shell_would_run_them(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "Run `kotaflow inline` (prose, not a block).\n"
        "```bash\n"
        "sudo -u kotaflow KOTAFLOW_CONFIG=/etc/kotaflow.yaml /opt/kotaflow/bin/kotaflow stack up\n"
        "uv run kotaflow alerts status --json && kotaflow bridge &\n"
        "useradd --system kotaflow\n"
        "kotaflow backup \\\n"
        "    /var/backups/kotaflow\n"
        "```\n"
        "```ini\n"
        "ExecStart=/opt/kotaflow/bin/kotaflow process --stage %i\n"
        "```\n",
        encoding="utf-8",
    )
    found = [(c.line, c.args) for c in command_lines(doc)]
    assert found == [
        (3, ("stack", "up")),
        (4, ("alerts", "status", "--json")),
        (4, ("bridge",)),
        (6, ("backup", "/var/backups/kotaflow")),
        (10, ("process", "--stage", "%i")),
    ]


def test_unknown_commands_and_options_are_named(app: typer.Typer) -> None:
    root = typer.main.get_command(app)
    assert check(root, ("--config", "x.yaml", "stack", "up", "--only", "kafka")) == (
        ["stack", "up"],
        [],
    )
    path, problems = check(root, ("stack", "upp"))
    assert path == ["stack"]
    assert "`kotaflow stack` has no command 'upp'" in problems[0]
    _, problems = check(root, ("grafana", "render", "DIR", "[--langs", "id]"))
    assert problems == ["`kotaflow grafana render` has no option --langs"]
