"""A 3-broker Kafka loses one broker under load and gets it back: nothing is lost.

Modelled on Kafka's own ``replication_test`` (RF 3, ``min.insync.replicas`` 2, a SIGKILL
while producing and consuming, then "every acked message was consumed"), with kotaflow's
real processes around it: ``kotaflow simulate`` -> the shared Mosquitto -> ``kotaflow
bridge`` -> a private 3-broker cluster (``kotaflow stack up --kafka-brokers 3`` in its own
state directory and ports, beside the shared single-node stack) -> ``kotaflow process``
-> scratch InfluxDB buckets (``benchmarks.e2e_bench.measure`` isolates the rest).

While the simulator publishes, the broker leading most of the raw topic's partitions is
SIGKILLed, left down a while, then started again with ``kotaflow stack up`` (the
operator's one action; the clients are not touched). Pinned: every valid reading is stored
once, every 1-minute rollup equals a recomputation from the stored points, no process
died, and the pause is measured (end-to-end latency over the run's baseline) and printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.e2e_bench import measure
from deploy.local.kafka import Kafka
from deploy.local.service import read_pid
from kotaflow.settings import Settings, load_settings
from tests.processors.helpers import wait_for
from tests.support.influx_check import mismatches, recompute, rollups, telemetry
from tests.support.private_pipeline import quick_flushes

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.asyncio]

BASE_PORT = 19292
"""Node 1's plain port; nodes 2 and 3 follow three apart (19295, 19298)."""
RATE = 250.0
DURATION_S = 45.0
KILL_AFTER_S = 12.0
DOWN_S = 12.0
STACK_UP_TIMEOUT_S = 420.0
SETTLE_S = 120.0
"""The restarted node competes for the two cores while the pipeline catches up: a backlog
may take longer than a normal run's settle time (a lost reading never arrives at all)."""


@dataclass
class Cluster:
    env: dict[str, str]
    settings: Settings
    """How the stack sees the cluster (its state dir, 3 brokers)."""
    events: dict[str, float] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in Kafka(self.settings).nodes)

    def stack(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kotaflow", "stack", *argv, "--kafka-brokers", "3"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STACK_UP_TIMEOUT_S,
            check=False,
        )

    def pid_of(self, node_id: int) -> int:
        node = next(n for n in Kafka(self.settings).nodes if n.node_id == node_id)
        pid = read_pid(node.paths.pidfile, expect=str(node.server_properties))
        assert pid is not None, f"kafka node {node_id} is not running"
        return pid


@pytest.fixture(scope="module")
def cluster(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A private 3-broker cluster, started and stopped (data purged) by this module."""
    state = tmp_path_factory.mktemp("kafka-cluster")
    env = {
        **os.environ,
        "KOTAFLOW_STACK__STATE_DIR": str(state),
        "KOTAFLOW_STACK__CACHE_DIR": str(stack.stack.cache_dir),  # the jars, not rebuilt
        "KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{BASE_PORT}",
    }
    env.pop("KOTAFLOW_CONFIG", None)
    settings = load_settings().model_copy(
        update={
            "stack": stack.stack.model_copy(update={"state_dir": state, "kafka_brokers": 3}),
            "kafka": stack.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{BASE_PORT}"}),
        }
    )
    cluster = Cluster(env, settings)
    try:
        up = cluster.stack("up", "--only", "kafka")
        assert up.returncode == 0, up.stdout + up.stderr
        yield cluster
    finally:
        down = cluster.stack("down", "--purge")
        assert down.returncode == 0, down.stdout + down.stderr


async def _leader_of_most(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    leaders = [p["leader"] for p in described["partitions"]]
    replicas = {len(p["replicas"]) for p in described["partitions"]}
    assert replicas == {3}, f"{topic} is not replicated 3 times: {described}"
    return max(set(leaders), key=leaders.count)


def _on_cluster(settings: Settings, bootstrap: str) -> Settings:
    """The shared stack's settings on the cluster, with windows that close quickly."""
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    return quick_flushes(settings.model_copy(update={"kafka": kafka}))


async def test_a_broker_killed_under_load_loses_no_reading_and_clients_recover(
    stack: Settings,
    cluster: Cluster,
    record_property: pytest.RecordProperty,
    tmp_path: Path,
) -> None:
    events = cluster.events

    async def kill_then_bring_back(run: Settings) -> None:
        await asyncio.sleep(KILL_AFTER_S)
        victim = await _leader_of_most(cluster.bootstrap, run.kafka.topics.raw)
        events["victim"] = victim
        events["killed_ms"] = time.time() * 1000
        os.kill(cluster.pid_of(victim), signal.SIGKILL)
        await asyncio.sleep(DOWN_S)
        events["restart_ms"] = time.time() * 1000
        up = await asyncio.to_thread(cluster.stack, "up", "--only", "kafka")
        assert up.returncode == 0, up.stdout + up.stderr
        events["back_ms"] = time.time() * 1000

    async def rollups_exact(run: Settings, prefix: str) -> None:
        async def matches() -> bool:
            return not mismatches(
                recompute(await telemetry(run, prefix)), await rollups(run, prefix, "1m")
            )

        await wait_for(matches, 120, "1m rollups equal to a recomputation from telemetry")

    run = await measure(
        _on_cluster(stack, cluster.bootstrap),
        rate=RATE,
        duration_s=DURATION_S,
        during=kill_then_bring_back,
        inspect=rollups_exact,
        logs_to=tmp_path,
        settle_s=SETTLE_S,
    )
    record_property("logs", str(tmp_path))
    assert "back_ms" in events, "the broker was not brought back during the run"
    assert run.expected > 0
    assert run.stored == run.expected, f"{run.stored} stored, {run.expected} valid sent"
    assert run.never_seen == 0, f"{run.never_seen} readings never reached InfluxDB"

    killed = events["killed_ms"]
    before = [lat for ts, lat in run.arrivals if lat is not None and ts < killed - 2000]
    around = [lat for ts, lat in run.arrivals if lat is not None and ts >= killed - 2000]
    baseline = statistics.median(before)
    pause_ms = max(around) - baseline
    summary = (
        f"broker-loss pause: {pause_ms / 1000:.1f} s (worst end-to-end latency "
        f"{max(around) / 1000:.1f} s after killing node {events['victim']:.0f}, baseline "
        f"median {baseline / 1000:.2f} s); restart took "
        f"{(events['back_ms'] - events['restart_ms']) / 1000:.1f} s; "
        f"{run.stored} readings stored of {run.expected}"
    )
    print(summary)
    record_property("broker_loss_pause_s", round(pause_ms / 1000, 2))
    record_property("broker_loss_summary", summary)
