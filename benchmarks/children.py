"""The ``kotaflow`` processes a scenario starts, watched and stopped like an operator would.

Each child runs ``python -m kotaflow <command>`` (the same entry point as the installed
``kotaflow``) with its output in a log file, so a failure can be shown. A scenario stops
only the children it started, by their pid, and kills one that does not stop in time.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procstats import ProcessCost, cost_of
from kotaflow.processes import stop_gracefully

STOP_TIMEOUT_S = 60.0


@dataclass
class Child:
    """One ``kotaflow`` child process and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    last_cost: ProcessCost | None = field(default=None)
    """Its cost when last sampled (a child that exits on its own loses its ``/proc``)."""

    def sample(self) -> ProcessCost | None:
        """Read its cost now, if it still runs; return the latest known."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):  # exited between poll and read
                self.last_cost = cost_of(self.name, self.proc.pid)
        return self.last_cost

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return (
            self.log.read_text(errors="replace", encoding="utf-8")[-chars:]
            if self.log.exists()
            else ""
        )


def spawn_kotaflow(
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    log: Path,
    stdout: Path | None = None,
    tree: Path | None = None,
) -> Child:
    """Start ``kotaflow <argv>`` with ``env``; its output goes to ``log`` (stdout to
    ``stdout`` instead, when given: a command's result apart from its logs).

    ``tree``: run the code of another checkout (an old commit, for a side-by-side
    comparison) with this virtualenv: it is the child's working directory, which ``-m``
    puts first on ``sys.path``, and its ``PYTHONPATH``."""
    if tree is not None:
        env = env | {"PYTHONPATH": str(tree.resolve())}
    with log.open("ab") as err, (stdout or log).open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kotaflow", *argv],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=tree,
        )
    return Child(name, proc, log)


def wait_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Wait until ``text`` appears in ``log``; raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not log.exists() or text not in log.read_text(encoding="utf-8", errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args!r} did not log {text!r}:\n{tail}")
        time.sleep(0.05)


def ready_or_stopped(
    children: Sequence[Child], watched: Child, text: str, timeout_s: float = 60
) -> list[Child]:
    """``children``, once ``watched`` logged ``text``; if it does not, stop them all and
    raise (a pipeline started in pieces is either all ready or all gone)."""
    try:
        wait_log(watched.log, text, watched.proc, timeout_s)
    except BaseException:
        for child in reversed(children):
            stop(child.proc)
        raise
    return list(children)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (the graceful stop every kotaflow command handles), then SIGKILL if needed."""
    stop_gracefully(proc, timeout_s)


Tree = tuple[str, Path | None]
"""A checkout to run kotaflow from, by name (None: this one)."""


def add_tree_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--tree NAME=PATH`` (repeatable): old against new, side by side in one run."""
    parser.add_argument(
        "--tree",
        action="append",
        metavar="NAME=PATH",
        help=f"run {what} from the checkout at PATH (repeatable; default: this one)",
    )


def trees_of(specs: Sequence[str] | None, default: str) -> list[Tree]:
    """The ``--tree`` values as (name, path); none given: this checkout, named ``default``."""
    found: list[Tree] = []
    for spec in specs or []:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--tree {spec!r}: give NAME=PATH")
        found.append((name, Path(path)))
    return found or [(default, None)]
