"""``deploy/edge``: the gateway's systemd unit runs a real command; systemd accepts it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotaflow.cli import app

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "edge" / "kotaflow-edge.service"


def test_the_edge_unit_runs_kotaflow_edge() -> None:
    (command,) = re.findall(r"^ExecStart=(.*)$", UNIT.read_text(), flags=re.MULTILINE)
    argv = shlex.split(command)
    assert argv[0] == "/opt/kotaflow/bin/kotaflow"
    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_systemd_verifies_the_edge_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    ours = str(Path(sys.prefix) / "bin" / "kotaflow")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/kotaflow/bin/kotaflow", ours))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
