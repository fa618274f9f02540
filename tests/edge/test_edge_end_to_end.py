"""Acceptance, end to end behind an edge: devices -> the edge's local Mosquitto -> ``kotaflow
edge`` -> (link) -> central Mosquitto -> ``kotaflow bridge`` -> Kafka -> ``kotaflow process``
-> InfluxDB, every part a real process. The link goes down for a while (time-compressed),
the edge is killed with SIGKILL while it drains the backlog, and after recovery every
reading is stored exactly once in effect with its device time (a payload without a time
keeps the time the edge took it) and the 1-minute, hourly and daily rollups equal a
recomputation.

The central broker is a private one configured as the stack does, from a registry whose
device ids carry the test's tag, so nothing reaches the shared broker's pipelines; Kafka
topics, consumer groups and InfluxDB buckets are the test's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks.children import Child, spawn_kotaflow, stop, wait_log
from devices.fleet import load_fleet
from devices.topics import device_topic
from kotaflow.settings import Settings
from kotaflow.wire.raw import EDGE_RX_PROPERTY, PayloadFormat
from tests.conftest import ScratchLedger
from tests.ingest.bridge_support import create_topics
from tests.support.edge_harness import (
    REPO,
    Collector,
    EdgeProcess,
    central_broker,
    central_reader,
    free_port,
    local_broker,
    local_publisher,
    wait_until,
)
from tests.support.influx_check import Point, all_rollups_match, telemetry
from tests.support.isolated_kafka import delete_topics
from tests.support.private_pipeline import (
    device_tag,
    env_for,
    private_fleet,
    private_pipeline,
    quick_flushes,
)
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.services

KECAMATAN = "Langke Rembong"
"""The sample registry's kecamatan with the most devices (15; 7 uncalibrated, of 4 types)."""
COMPRESSION = 30
"""Wall seconds run this much faster than device time: a 60 s type publishes every 2 s."""
OUTAGE_S = 25.0
"""The link is down this long (12.5 device minutes; the queue logic does not care how long)."""
BACKLOG_RATE_PER_S = 8
"""The edge's drain cap here: slow enough that the kill lands in the middle of the drain."""
WITHOUT_TIME_EVERY = 4
"""Every 4th reading of a device carries no time of its own: it keeps the edge's."""


@dataclass
class Sent:
    """What the devices published: (device, reading number) -> payload."""

    payloads: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def fleet_settings(
    stack: Settings, scratch_ledger: ScratchLedger, tmp_path: Path
) -> Iterator[Settings]:
    """Private topics, groups, buckets (least-privilege tokens) and tagged device ids."""
    tokens = tmp_path / "influx-tokens"
    tokens.mkdir()
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    for mine in private_pipeline(stack, scratch_ledger, tokens):
        yield quick_flushes(private_fleet(mine, fleet_dir, device_tag(mine)))


def _reading(index: int, n: int, metrics: dict[str, Any], ts_ms: int) -> Any:
    """Reading ``n`` of a device: in range, unique per device, every 4th without a time."""
    values = {
        name: round(spec.minimum + (spec.maximum - spec.minimum) * (n + index / 10) / 100, 3)
        for name, spec in metrics.items()
    }
    return (
        values
        if n % WITHOUT_TIME_EVERY == WITHOUT_TIME_EVERY - 1
        else {"ts": ts_ms, "values": values}
    )


@dataclass
class FieldDevice:
    id: str
    interval_s: int
    metrics: dict[str, Any]


def _publish_like_devices(
    port: int, devices: list[FieldDevice], sent: Sent, stop: threading.Event
) -> None:
    """Each device at its type's interval (compressed), device times an interval apart."""
    client = local_publisher(port)
    started, base_ms = time.monotonic(), int(time.time() * 1000) - 60 * 60_000
    count = dict.fromkeys((d.id for d in devices), 0)
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            infos = []
            for index, device in enumerate(devices):
                n = count[device.id]
                if n >= 99 or elapsed < n * device.interval_s / COMPRESSION:
                    continue  # n < 99 keeps every value in range
                payload = _reading(index, n, device.metrics, base_ms + n * device.interval_s * 1000)
                with sent.lock:
                    sent.payloads[(device.id, n)] = payload
                topic = device_topic(PayloadFormat.NATIVE_JSON, device.id)
                infos.append(client.publish(topic, json.dumps(payload), qos=1))
                count[device.id] = n + 1
            for info in infos:
                info.wait_for_publish(30)
            stop.wait(0.1)
    finally:
        client.disconnect()
        client.loop_stop()


def _expected(sent: Sent, collector: Collector) -> dict[Point, float]:
    """Every point the pipeline must hold: device time, or the edge's receive time
    (the one the central broker saw; all copies of a message must carry the same)."""
    edge_time: dict[tuple[str, str], set[int]] = {}
    with collector.lock:
        for topic, forwarded, props in collector.got:
            key = (topic, json.dumps(forwarded, sort_keys=True))
            edge_time.setdefault(key, set()).add(int(props[EDGE_RX_PROPERTY]))
    points: dict[Point, float] = {}
    with sent.lock:
        for (device, _n), payload in sent.payloads.items():
            if "ts" in payload:
                ts, values = int(payload["ts"]), payload["values"]
            else:
                key = (
                    device_topic(PayloadFormat.NATIVE_JSON, device),
                    json.dumps(payload, sort_keys=True),
                )
                times = edge_time.get(key, set())
                assert len(times) == 1, (device, payload, times)
                ts, values = times.pop(), payload
            points.update({(device, m, ts): float(v) for m, v in values.items()})
    return points


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def test_outage_and_kill_9_during_the_drain_store_every_reading_once_with_its_time(
    fleet_settings: Settings, tmp_path: Path
) -> None:
    s = fleet_settings
    tag = device_tag(s)
    fleet = load_fleet(s)
    # Calibrated devices are left out so that a stored value can be compared as sent.
    field_devices = [
        FieldDevice(
            d.id,
            fleet.catalogue.types[d.type].interval_s,
            {n: m for n, m in fleet.metrics_of(d).items() if not m.boolean},
        )
        for d in fleet.registry
        if d.kecamatan == KECAMATAN and d.enabled and not d.calibration
    ]
    assert len(field_devices) >= 5
    per_s = sum(COMPRESSION / d.interval_s for d in field_devices)
    lease_topic = f"test.{tag}.bridge-lease"
    assert s.registry_file is not None
    children: list[Child] = []
    with (
        central_broker(tmp_path / "central-broker", s.registry_file) as central,
        local_broker(tmp_path) as local_port,
        central_reader(central) as collector,
    ):
        relay = TcpRelay(central.mqtt.port, free_port())
        edge = EdgeProcess(central, relay.port, local_port, tmp_path, KECAMATAN)
        edge.extra_env["KOTAFLOW_EDGE__CLIENT_ID"] = f"edge-e2e-{uuid.uuid4().hex[:8]}"
        edge.extra_env["KOTAFLOW_EDGE__BACKLOG_RATE_PER_S"] = str(BACKLOG_RATE_PER_S)
        stop_devices = threading.Event()
        sent = Sent()
        try:
            asyncio.run(create_topics(s, [lease_topic], partitions=1))
            pipeline = env_for(s)
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
            }  # the bridge's per-device rate limit stays at its default: the replay fits
            bridge_log, process_log = tmp_path / "bridge.log", tmp_path / "process.log"
            bridge = spawn_kotaflow("bridge", ["bridge"], _env(bridge_env), bridge_log)
            children.append(bridge)
            process_env = _env({**pipeline, "KOTAFLOW_METRICS_PORT": "0"})
            children.append(spawn_kotaflow("process", ["process"], process_env, process_log))
            relay.up()
            edge.start()
            wait_log(bridge_log, "MQTT subscribed", bridge.proc, 60)

            devices_thread = threading.Thread(
                target=_publish_like_devices,
                args=(local_port, field_devices, sent, stop_devices),
                daemon=True,
            )
            devices_thread.start()

            def stored() -> int:
                return len(asyncio.run(telemetry(s, tag)))

            wait_until(lambda: stored() > 0, 60, "the first live readings in InfluxDB")

            relay.down()
            time.sleep(OUTAGE_S)
            backlog = edge.queued()
            assert backlog >= OUTAGE_S * per_s * 0.8, backlog

            relay.up()
            wait_until(lambda: edge.queued() <= backlog * 0.6, 30, "the drain to be under way")
            edge.kill()
            left = edge.queued()
            assert left > 0, "the drain ended before the kill"
            edge.start()

            time.sleep(6)  # live readings beside the rest of the drain
            stop_devices.set()
            devices_thread.join(30)
            wait_until(lambda: edge.queued() == 0, 60, "the edge's queue to empty")

            def complete() -> bool:
                return asyncio.run(telemetry(s, tag)) == _expected(sent, collector)

            try:
                wait_until(complete, 60, "every reading stored once with its device time")
            except AssertionError:
                got, want_points = asyncio.run(telemetry(s, tag)), _expected(sent, collector)
                missing = sorted(want_points.keys() - got.keys())
                extra = sorted(got.keys() - want_points.keys())
                raise AssertionError(
                    f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}"
                ) from None
            # 1-minute, hourly and daily rollups, each equal to a recomputation from raw.
            asyncio.run(all_rollups_match(s, set(_expected(sent, collector))))
            readings = len(sent.payloads)
            without_time = sum(1 for p in sent.payloads.values() if "ts" not in p)
            print(
                f"\nedge end to end: {readings} readings ({without_time} without a time) "
                f"from {len(field_devices)} devices, backlog {backlog} at the end of the outage, "
                f"{left} still queued at the kill, {collector.count() - readings} duplicates "
                f"at the central broker"
            )
            assert "rate_limited" not in bridge_log.read_text()
        finally:
            stop_devices.set()
            edge.stop()
            relay.down()
            for child in children:
                stop(child.proc)
            asyncio.run(delete_topics(s, [lease_topic]))
