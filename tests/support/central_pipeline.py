"""The central pipeline behind a private central broker, as real processes: ``kotaflow
bridge`` (reading the private broker) and ``kotaflow process``, on a test's own Kafka topics,
groups and InfluxDB buckets (tests/support/private_pipeline.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.children import Child, spawn_kotaflow, stop, wait_log
from kotaflow.settings import Settings
from tests.ingest.bridge_support import create_topics
from tests.support.edge_harness import REPO
from tests.support.isolated_kafka import delete_topics
from tests.support.private_pipeline import device_tag, env_for


@contextmanager
def central_pipeline(s: Settings, central: Settings, logs: Path) -> Iterator[list[Child]]:
    """Bridge and processors for ``s`` (isolated), the bridge on ``central``'s broker with
    the bridge account from its credentials; yields once the bridge has subscribed."""
    tag = device_tag(s)
    lease_topic = f"test.{tag}.bridge-lease"
    children: list[Child] = []
    try:
        asyncio.run(create_topics(s, [lease_topic], partitions=1))
        pipeline = {**os.environ, "PYTHONPATH": str(REPO), **env_for(s)}
        bridge_env = {
            **pipeline,
            "KOTAFLOW_KAFKA__TOPICS__BRIDGE_LEASE": lease_topic,
            "KOTAFLOW_BRIDGE__CLIENT_ID": f"test-bridge-{tag}",
            "KOTAFLOW_BRIDGE__METRICS_PORT": "0",
            "KOTAFLOW_BRIDGE__LEASE_SESSION_TIMEOUT_MS": "6000",
            "KOTAFLOW_MQTT__PORT": str(central.mqtt.port),
            "KOTAFLOW_MQTT__CREDENTIALS_FILE": str(
                central.stack.state_dir / "mosquitto" / "credentials.json"
            ),
        }
        bridge_log = logs / "bridge.log"
        bridge = spawn_kotaflow("bridge", ["bridge"], bridge_env, bridge_log)
        children.append(bridge)
        process_env = {**pipeline, "KOTAFLOW_METRICS_PORT": "0"}
        children.append(spawn_kotaflow("process", ["process"], process_env, logs / "process.log"))
        wait_log(bridge_log, "MQTT subscribed", bridge.proc, 60)
        yield children
    finally:
        for child in children:
            stop(child.proc)
        asyncio.run(delete_topics(s, [lease_topic]))
