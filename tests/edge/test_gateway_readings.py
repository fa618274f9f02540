"""The edge reports about itself as the registry's gateway device, between two real
Mosquitto brokers: live while the link is up (not behind the backlog), history after an
outage, allowed by the edge's own account and ACL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from kotaflow.wire.raw import EDGE_NAME_PROPERTY
from tests.support.edge_harness import (
    Collector,
    EdgeProcess,
    local_publisher,
    publish_readings,
    wait_until,
)
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.services

GATEWAY, DEVICE, KECAMATAN = "reo-gw-01", "reo-wx-01", "Reok"
BACKLOG = 200
DRAIN_PER_S = 20


@pytest.fixture
def reok_edge(
    central: Settings, relay: TcpRelay, local_port: int, tmp_path: Path
) -> Iterator[EdgeProcess]:
    """The edge of Reok, reporting every second as ``reo-gw-01``, draining slowly."""
    process = EdgeProcess(central, relay.port, local_port, tmp_path, KECAMATAN)
    process.extra_env.update(
        {
            "KOTAFLOW_EDGE__CLIENT_ID": f"edge-test-{uuid.uuid4().hex[:8]}",
            "KOTAFLOW_EDGE__DEVICE_ID": GATEWAY,
            "KOTAFLOW_EDGE__REPORT_EVERY_S": "1",
            "KOTAFLOW_EDGE__BACKLOG_RATE_PER_S": str(DRAIN_PER_S),
        }
    )
    try:
        yield process
    finally:
        process.stop()


def gateway_reports(collector: Collector) -> list[dict[str, object]]:
    with collector.lock:
        return [
            payload | {"edge": props.get(EDGE_NAME_PROPERTY)}
            for topic, payload, props in collector.got
            if topic == f"kotaflow/{GATEWAY}/telemetry"
        ]


def device_messages(collector: Collector) -> int:
    with collector.lock:
        return sum(1 for topic, *_ in collector.got if topic == f"kotaflow/{DEVICE}/telemetry")


def values(report: dict[str, object]) -> dict[str, float]:
    found = report["values"]
    assert isinstance(found, dict)
    return found


def test_gateway_readings_go_live_past_the_backlog_and_the_outage_arrives_as_history(
    reok_edge: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    reok_edge.start()
    publisher = local_publisher(reok_edge.local_port)
    publish_readings(publisher, [DEVICE], 0, BACKLOG)
    wait_until(lambda: reok_edge.queued() >= BACKLOG + 3, 30, "a backlog and outage reports")
    up_ms = int(time.time() * 1000)
    relay.up()

    def live_report() -> bool:
        return any(int(str(r["ts"])) >= up_ms for r in gateway_reports(collector))

    wait_until(live_report, 10, "a gateway reading made after the link came up")
    assert device_messages(collector) < BACKLOG // 2  # it did not wait for the backlog
    live = next(r for r in gateway_reports(collector) if int(str(r["ts"])) >= up_ms)
    assert values(live)["queue_messages"] > BACKLOG // 2  # it tells of the backlog draining
    assert live["edge"] == reok_edge.name

    wait_until(lambda: device_messages(collector) >= BACKLOG, 60, "the backlog drained")
    wait_until(lambda: reok_edge.queued() == 0, 15, "the queue to empty")
    reports = gateway_reports(collector)
    during = [r for r in reports if int(str(r["ts"])) < up_ms]
    assert len(during) >= 3, "the outage's reports arrive as history"
    assert all(values(r)["link_uptime"] == 0 for r in during)
    assert values(during[-1])["queue_messages"] >= BACKLOG
    stamps = [int(str(r["ts"])) for r in reports]
    assert len(set(stamps)) == len(stamps)  # none twice
    publisher.loop_stop()
