from __future__ import annotations

import subprocess
import sys

import pytest

from kotaflow.settings import Settings


@pytest.mark.services
def test_main_command_runs_the_pipeline_and_stops_cleanly(stack: Settings) -> None:
    """``kotaflow run`` (the README's main command) starts every part, shows rates, stops."""
    done = subprocess.run(
        [sys.executable, "-m", "kotaflow", "run", "--duration", "15", "--rate", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for part in ("bridge", "process", "alert", "simulate"):
        assert part in done.stdout
    assert "exited" not in done.stdout, done.stdout[-2000:]
    assert "kotaflow.readings" in done.stdout
