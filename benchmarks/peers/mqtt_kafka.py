"""Comparison 1: N queued QoS 1 messages, MQTT -> Kafka, kotaflow bridge vs Telegraf.

The method of :mod:`benchmarks.bridge_bench`, with Telegraf in mosquitto_sub's place: both
peers' persistent sessions subscribe first and go offline, ``mosquitto_pub`` queues the
same N messages (50 devices, 160 bytes) for both, then each drains its queue alone into
its own Kafka topic. Progress is the records in that topic (acks=all: a record counted is
durable), so both are timed by the same rule (:mod:`benchmarks.peers.drain`): rate and CPU
over the span from 10 % of the N records in Kafka to all of them.

Both do the bridge's job: each payload byte for byte into Kafka, keyed by the device id
from its topic, acked to the broker only once Kafka has it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bridge_bench import _client_tool, _free_port, _publish, _topics
from benchmarks.children import Child, spawn_kotaflow, stop, wait_log
from benchmarks.isolation import mosquitto_cli_env, wipe_mqtt_session
from benchmarks.peers.common import PeerRun
from benchmarks.peers.drain import Drain, KafkaProgress, watch_drain
from benchmarks.peers.telegraf import MqttSource, mqtt_forward_config, spawn_telegraf
from devices.topics import SUBSCRIPTIONS
from kotaflow.kafka import client_options
from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings

PARTITIONS = 6
DEVICES = 50
PAYLOAD_BYTES = 160
PEERS = ("kotaflow", "telegraf")


@dataclass(frozen=True, slots=True)
class MqttKafkaRound:
    runs: dict[str, PeerRun]


def telegraf_source(settings: Settings, client_id: str, topics: tuple[str, ...]) -> MqttSource:
    access = mqtt_access(settings, Account.BRIDGE)
    scheme = "ssl" if access.tls else "tcp"
    return MqttSource(f"{scheme}://{access.host}:{access.port}", access.username, client_id, topics)


def telegraf_secrets(settings: Settings) -> dict[str, str]:
    """``KF_*`` variables the Telegraf configurations read (never written to a file)."""
    access = mqtt_access(settings, Account.BRIDGE)
    secrets = {}
    if access.login is not None and access.login.password is not None:
        secrets["KF_MQTT_PASSWORD"] = access.login.password.get_secret_value()
    if settings.influxdb.token is not None:
        secrets["KF_INFLUX_TOKEN"] = settings.influxdb.token.get_secret_value()
    return secrets


async def run_round(
    settings: Settings, telegraf: Path, n: int, order: tuple[str, ...]
) -> MqttKafkaRound:
    """One round: queue ``n`` messages for both peers, then drain them in ``order``."""
    pub_tool = _client_tool(settings, "mosquitto_pub")
    rid = uuid.uuid4().hex[:8]
    topic = {
        "kotaflow": f"kotaflow.raw.bench-{rid}",
        "telegraf": f"bench.{rid}.telegraf",
    }
    dead = f"kotaflow.deadletter.bench-{rid}"
    session = {"kotaflow": f"bench-bridge-{rid}", "telegraf": f"bench-telegraf-{rid}"}
    port = _free_port()
    env = {
        **os.environ,
        "KOTAFLOW_KAFKA__TOPICS__RAW": topic["kotaflow"],
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": dead,
        "KOTAFLOW_BRIDGE__CLIENT_ID": session["kotaflow"],
        "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "900",
        "KOTAFLOW_BRIDGE__METRICS_PORT": str(port),
        "KOTAFLOW_BRIDGE__RATE_PER_S": "1000000",
        "KOTAFLOW_BRIDGE__RATE_BURST": "1000000",
    }
    source = telegraf_source(settings, session["telegraf"], SUBSCRIPTIONS)
    config = mqtt_forward_config(source, settings.kafka.bootstrap_servers, topic["telegraf"])
    secrets = telegraf_secrets(settings)
    work = Path(tempfile.mkdtemp(prefix="kotaflow-peers-"))
    writer = mosquitto_cli_env(mqtt_access(settings, Account.GATEWAY), work / "writer")

    def start(peer: str) -> Child:
        if peer == "kotaflow":
            return spawn_kotaflow("kotaflow bridge", ["bridge"], env, work / "bridge.log")
        return spawn_telegraf(telegraf, "telegraf mqtt-kafka", config, work, secrets)

    await _topics(settings, create=[topic["kotaflow"], topic["telegraf"], dead])
    children: list[Child] = []
    try:
        for peer, ready in (("kotaflow", "MQTT subscribed"), ("telegraf", "Connected [")):
            child = start(peer)
            children.append(child)
            wait_log(child.log, ready, child.proc, 120)  # session and subscriptions made
            child.proc.send_signal(signal.SIGTERM)
            child.proc.wait(timeout=60)
        _publish(pub_tool, writer, rid, n, DEVICES, PAYLOAD_BYTES)
        runs = {}
        async with KafkaProgress(client_options(settings)) as kafka:
            for peer in order:
                started = time.monotonic()
                child = start(peer)
                children.append(child)
                drain = await watch_drain(
                    [child], kafka.topic_progress(topic[peer], PARTITIONS, n), started=started
                )
                stop(child.proc)
                runs[peer] = _peer_run(peer, drain, n, child)
        return MqttKafkaRound(runs)
    finally:
        for child in children:
            if child.proc.poll() is None:
                stop(child.proc)
        for client_id in session.values():
            wipe_mqtt_session(settings, client_id)
        await _topics(settings, delete=[topic["kotaflow"], topic["telegraf"], dead])
        shutil.rmtree(work, ignore_errors=True)


def _peer_run(peer: str, drain: Drain, n: int, child: Child) -> PeerRun:
    cost = child.last_cost
    return PeerRun(
        peer,
        round(n * drain.steady.share),
        drain.steady.wall_s,
        drain.steady.cpu_s,
        drain.total.wall_s,
        drain.total.cpu_s,
        processes=(cost,) if cost else (),
    )


def figures(run: PeerRun) -> dict[str, float | None]:
    return {"throughput": run.rate, "CPU per message": run.cpu_us_per_item}
