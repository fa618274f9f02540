"""``kotaflow run`` as the README's main command, on topics, consumer groups, alert state and
InfluxDB buckets of its own, so the operator's stack is left as it was."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from deploy.local.kafka_topics import ensure_topics
from kotaflow.mqtt import wipe_mqtt_session
from kotaflow.settings import Settings
from tests.support.isolated_kafka import delete_topics, isolated, isolation_env


@pytest.mark.services
def test_main_command_runs_the_pipeline_and_stops_cleanly(
    scratch_influx: Settings, tmp_path: Path
) -> None:
    """``kotaflow run`` starts every part, shows rates, stops."""
    tag = uuid.uuid4().hex[:8]
    mine = isolated(scratch_influx, tag, prefix="run")
    topics = mine.kafka.topics.model_copy(update={"alerts": f"run.{tag}.alerts"})
    alerting = mine.alerting.model_copy(update={"group_id": f"run-{tag}-alert"})
    mine = mine.model_copy(
        update={"kafka": mine.kafka.model_copy(update={"topics": topics}), "alerting": alerting}
    )
    names = [topics.raw, topics.readings, topics.deadletter, topics.alerts]
    assert scratch_influx.influxdb.token is not None
    # The bridge keeps a persistent session under its client id: a made-up one (so its own
    # lease group), wiped afterwards, so the run leaves no session queueing on the broker.
    bridge_id = f"test-run-{tag}"
    env = {
        **os.environ,
        **isolation_env(mine),
        "KOTAFLOW_INFLUXDB__TOKEN": scratch_influx.influxdb.token.get_secret_value(),
        "KOTAFLOW_ALERTING__STATE_DIR": str(tmp_path / "alerting"),
        "KOTAFLOW_BRIDGE__CLIENT_ID": bridge_id,
    }
    ensure_topics(mine.kafka, dict.fromkeys(names, 3), lambda _: None)
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
        wipe_mqtt_session(mine, bridge_id)
        asyncio.run(delete_topics(mine, names))
    assert done.returncode == 0, done.stderr[-2000:]
    for part in ("bridge", "process", "alert", "simulate", "public"):
        assert part in done.stdout
    assert "open http://127.0.0.1:" in done.stdout  # the public pages' address
    assert "exited" not in done.stdout, done.stdout[-2000:]
    assert topics.readings in done.stdout
