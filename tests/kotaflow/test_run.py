from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from kotaflow.mqtt import wipe_mqtt_session
from kotaflow.settings import Settings


@pytest.mark.services
def test_main_command_runs_the_pipeline_and_stops_cleanly(stack: Settings) -> None:
    """``kotaflow run`` (the README's main command) starts every part, shows rates, stops."""
    # The bridge keeps a persistent session under its client id: a made-up one (so its own
    # lease group), wiped afterwards, so the run leaves no session queueing on the broker.
    bridge_id = f"test-run-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KOTAFLOW_BRIDGE__CLIENT_ID": bridge_id,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kotaflow", "run", "--duration", "15", "--rate", "200"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
    finally:
        wipe_mqtt_session(stack, bridge_id)
    assert done.returncode == 0, done.stderr[-2000:]
    for part in ("bridge", "process", "alert", "simulate"):
        assert part in done.stdout
    assert "exited" not in done.stdout, done.stdout[-2000:]
    assert "kotaflow.readings" in done.stdout
