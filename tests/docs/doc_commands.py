"""Find the ``kotaflow ...`` command lines in Markdown code blocks and check them against the CLI.

Pure: :func:`command_lines` reads Markdown, :func:`check` walks a click command tree. A line
counts when ``kotaflow`` is in command position: at the start, or after environment
assignments, ``uv run``, ``sudo``, ``exec``, ``time``, a shell prompt, or as a systemd
``ExecStart=``. Placeholders (``<id>``, ``$VAR``, ``...``) end the walk without a complaint.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^\s*(```|~~~)")
SEPARATORS = re.compile(r"\s(?:&&|\|\||\||;|&)(?:\s|$)|;\s*$")
PREFIX_WORDS = {"uv", "run", "sudo", "-E", "exec", "time", "nohup", "$", "#", "env"}
SUDO_VALUE_OPTIONS = {"-u", "--user", "-g", "--group"}
EXEC_KEYS = ("ExecStart=", "ExecStartPre=", "ExecStartPost=", "ExecReload=", "ExecStop=")


@dataclass(frozen=True)
class DocCommand:
    file: Path
    line: int
    text: str
    args: tuple[str, ...]
    """What follows ``kotaflow``."""


def command_lines(path: Path) -> Iterator[DocCommand]:
    """Every kotaflow invocation inside the fenced code blocks of one Markdown file."""
    in_block = False
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(raw):
            in_block, pending = not in_block, []
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        text = " ".join([*pending, raw]).strip()
        pending = []
        for part in SEPARATORS.split(text):
            args = _kotaflow_args(part)
            if args is not None:
                yield DocCommand(path, start, part.strip(), args)


def _kotaflow_args(command: str) -> tuple[str, ...] | None:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in prose: not a command
        return None
    skip_value = False
    for index, word in enumerate(words):
        if word.startswith(EXEC_KEYS):
            word = word.split("=", 1)[1]
        if skip_value:
            skip_value = False
        elif _is_assignment(word):
            continue
        elif Path(word).name == "kotaflow" and not word.startswith("-"):
            return tuple(words[index + 1 :])
        elif word in SUDO_VALUE_OPTIONS:
            skip_value = True
        elif word not in PREFIX_WORDS:
            return None
    return None


def _is_assignment(word: str) -> bool:
    return re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word) is not None


def _placeholder(word: str) -> bool:
    return word.startswith(("<", "[", "{", "$", "…", "...")) or word in ("COMMAND", "...")


def check(root: Any, args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The sub-command path ``args`` names, and every problem: unknown commands or options.

    ``root`` is ``typer.main.get_command(app)``: groups have ``commands``, every command
    ``params`` with ``opts`` (typer carries its own click, so this is duck-typed).
    """
    command, path, problems = root, [], []
    words = list(args)
    while words:
        word = words.pop(0)
        if word.startswith("[-"):  # an optional part, as usage lines write it: [--lang id]
            word = word.strip("[]")
        if word == "--":
            break
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            option = _option(command, name)
            if option is None:
                where = " ".join(["kotaflow", *path])
                problems.append(f"`{where}` has no option {name}")
            elif option is not _FLAG and _takes_value(option) and "=" not in word:
                words = words[1:]  # its value
            continue
        if _placeholder(word):
            break
        if hasattr(command, "commands"):
            sub = command.commands.get(word)
            if sub is None:
                known = ", ".join(sorted(command.commands))
                where = " ".join(["kotaflow", *path])
                problems.append(f"`{where}` has no command {word!r} (it has: {known})")
                break
            command, path = sub, [*path, word]
    return path, problems


_FLAG = object()


def _option(command: Any, name: str) -> Any:
    if name in ("--help", "-h"):
        return _FLAG
    for param in command.params:
        opts = (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
        if name in opts and name.startswith("-"):
            return param
    return None


def _takes_value(option: Any) -> bool:
    return not (getattr(option, "is_flag", False) or getattr(option, "count", False))
