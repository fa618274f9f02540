"""Gateway readings are real readings: from ``kotaflow edge`` through the central broker,
``kotaflow bridge``, Kafka and ``kotaflow process`` into InfluxDB (measurement ``gateway``),
the outage's reports included, each with its own time.

Private everything: a central broker whose registry ids carry the test's tag, the test's
Kafka topics and groups, scratch InfluxDB buckets with least-privilege tokens.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from devices.fleet import load_fleet
from kotaflow.settings import Settings
from tests.support.central_pipeline import central_pipeline
from tests.support.edge_harness import (
    EdgeProcess,
    central_broker,
    free_port,
    local_broker,
    wait_until,
)
from tests.support.influx_check import Point, telemetry
from tests.support.private_pipeline import device_tag
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.services

KECAMATAN = "Reok"
OUTAGE_S = 4.0


def reports(points: dict[Point, float], device: str) -> dict[int, dict[str, float]]:
    """Report time -> its stored metrics."""
    found: dict[int, dict[str, float]] = {}
    for (dev, metric, ts), value in points.items():
        if dev == device:
            found.setdefault(ts, {})[metric] = value
    return found


def test_gateway_readings_are_stored_live_and_the_outage_as_history(
    fleet_settings: Settings, tmp_path: Path
) -> None:
    s = fleet_settings
    fleet = load_fleet(s)
    (gateway,) = (d for d in fleet.registry if d.type == "gateway" and d.kecamatan == KECAMATAN)
    metrics = set(fleet.catalogue.types["gateway"].metrics)
    assert s.registry_file is not None
    with (
        central_broker(tmp_path / "central-broker", s.registry_file) as central,
        local_broker(tmp_path) as local_port,
        central_pipeline(s, central, tmp_path),
    ):
        relay = TcpRelay(central.mqtt.port, free_port())
        edge = EdgeProcess(central, relay.port, local_port, tmp_path, KECAMATAN)
        edge.extra_env.update(
            {
                "KOTAFLOW_EDGE__CLIENT_ID": f"edge-gw-{uuid.uuid4().hex[:8]}",
                "KOTAFLOW_EDGE__DEVICE_ID": gateway.id,
                "KOTAFLOW_EDGE__REPORT_EVERY_S": "1",
            }
        )
        try:
            relay.up()
            edge.start()

            def stored() -> dict[int, dict[str, float]]:
                return reports(asyncio.run(telemetry(s, device_tag(s))), gateway.id)

            wait_until(lambda: len(stored()) >= 2, 60, "live gateway readings in InfluxDB")
            relay.down()
            down_ms = int(time.time() * 1000)
            time.sleep(OUTAGE_S)
            up_ms = int(time.time() * 1000)
            relay.up()

            def outage_stored() -> bool:
                during = [ts for ts in stored() if down_ms + 1500 < ts < up_ms]
                return len(during) >= 2

            wait_until(outage_stored, 60, "the outage's reports stored as history")
            wait_until(lambda: edge.queued() == 0, 30, "the edge's queue to empty")
            found = stored()
            assert all(set(values) == metrics for values in found.values()), found
            during = {ts: v for ts, v in found.items() if down_ms + 1500 < ts < up_ms}
            assert all(v["link_uptime"] == 0 for v in during.values()), during
            assert max(v["queue_messages"] for v in during.values()) >= 1
        finally:
            edge.stop()
            relay.down()
