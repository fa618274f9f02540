"""Every ``kotaflow`` command the README and ``docs/`` show exists, with the options shown.

The docs are read as an operator reads them: each fenced shell block and each inline code
span is searched for ``kotaflow`` invoked as a command (at the start, after ``sudo``,
``uv run``, ``docker compose exec <service>``, the VM guide's ``kf``, a pipe or ``&&``;
also as ``/opt/kotaflow/bin/kotaflow``, and ``docker compose run`` of a service whose
entrypoint is ``kotaflow``). The words after it are walked down kotaflow's own
command tree (click, from typer) and every ``--option`` must belong to the command reached;
each command reached must answer ``--help``. A renamed command or a flag the docs invented
fails here, not in front of a regency's IT team.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
INVOCATION = re.compile(
    r"(?:^|&&|\|\||[;|(]|\$\(|\bsudo|\bkf|\buv run|\bexec(?:\s+-\S+)*\s+[\w-]+)\s*"
    r"(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:[^\s=`'\"]*/)?kotaflow\s+(.*)$"
)
"""``kotaflow`` in a command position; group 1 is the rest of the line."""
COMPOSE_RUN = re.compile(r"docker compose run(?:\s+-\S+)*\s+(?:bridge|process|alert)\s+(.*)$")
"""``docker compose run <service> ARGS``: these services' entrypoint is ``kotaflow``."""
END_TOKENS = {"|", "||", "&&", "&", ";", ">", ">>", "<", "2>&1", "...", "…", "\\"}
ROOT_OPTIONS_WITH_VALUE = {"--config", "-c"}


@dataclass(frozen=True)
class Shown:
    """One kotaflow invocation as a doc shows it."""

    where: str
    words: tuple[str, ...]


def shown_invocations() -> list[Shown]:
    found: list[Shown] = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(ROOT))
        for block in FENCE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                found += _in_line(line, name)
        prose = FENCE.sub("", text)
        for span in INLINE.findall(prose):
            found += _in_line(span, name)
    return found


def _in_line(line: str, where: str) -> list[Shown]:
    shown = []
    for part in re.split(r"&&|\|\||[;|&]", line):
        match = INVOCATION.search(part.strip()) or COMPOSE_RUN.search(part.strip())
        if match:
            shown.append(Shown(f"{where}: {part.strip()}", _words(match.group(1))))
    return shown


def _words(rest: str) -> tuple[str, ...]:
    try:
        tokens = shlex.split(rest, comments=True)
    except ValueError:  # an unbalanced quote in prose: plain words are enough here
        tokens = rest.split()
    words = []
    for token in tokens:
        if token in END_TOKENS or token.startswith((">", "2>")):
            break
        words.append(token.strip("[]"))
    return tuple(words)


@cache
def command_tree() -> Any:
    """kotaflow's command tree (typer's click-like objects: ``.commands``, ``.params``)."""
    from kotaflow.cli import app

    return typer.main.get_command(app)


def resolve(words: tuple[str, ...]) -> tuple[list[str], Any, list[str]]:
    """(command path, the command reached, the options given to it); raises on an unknown
    sub-command or option."""
    command = command_tree()
    path: list[str] = []
    rest = list(words)
    while rest and rest[0] in ROOT_OPTIONS_WITH_VALUE and not path:
        rest = rest[2:]
    while rest and getattr(command, "commands", None):
        name = rest[0]
        if name.startswith("-"):
            break
        sub = command.commands.get(name)
        if sub is None:
            known = ", ".join(sorted(command.commands))
            raise LookupError(f"no command {' '.join([*path, name])!r} (known here: {known})")
        path.append(name)
        command = sub
        rest = rest[1:]
    known_options = {opt for param in command.params for opt in param.opts} | {"--help"}
    options = [word.split("=", 1)[0] for word in rest if word.startswith("--")]
    unknown = [opt for opt in options if opt not in known_options]
    if unknown:
        raise LookupError(
            f"kotaflow {' '.join(path)} has no option {', '.join(unknown)} "
            f"(it has {', '.join(sorted(known_options))})"
        )
    return path, command, options


SHOWN = shown_invocations()


def test_the_docs_show_kotaflow_commands() -> None:
    """The scan itself works: the README's quick start and the operator guide are found."""
    places = {shown.where.split(":", 1)[0] for shown in SHOWN}
    assert "README.md" in places
    assert "docs/operator-guide.md" in places
    assert len(SHOWN) > 50


@pytest.mark.parametrize("shown", SHOWN, ids=[s.where[:90] for s in SHOWN])
def test_every_command_in_the_docs_exists_with_its_options(shown: Shown) -> None:
    try:
        resolve(shown.words)
    except LookupError as err:
        pytest.fail(f"{shown.where}\n{err}")


def test_every_command_in_the_docs_answers_help() -> None:
    from kotaflow.cli import app

    paths = {tuple(resolve(shown.words)[0]) for shown in SHOWN}
    runner = CliRunner()
    for path in sorted(paths):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"kotaflow {' '.join(path)} --help: {result.output}"
