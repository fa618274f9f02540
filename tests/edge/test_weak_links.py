"""The edge behind Toxiproxy (a real TCP proxy that shapes and breaks the uplink)."""

from __future__ import annotations

import time

import pytest

from kotaflow.wire.raw import EDGE_RX_PROPERTY
from tests.support.edge_harness import (
    Collector,
    EdgeProcess,
    Toxiproxy,
    kecamatan_devices,
    local_publisher,
    publish_readings,
    wait_until,
)

pytestmark = pytest.mark.services

KBIT16 = 2
"""16 kbit/s in Toxiproxy's bandwidth unit (KB/s)."""
LIVE_DELAY_BOUND_S = 10.0
"""The bound docs/edge.md states for live data while a backlog drains over 16 kbit/s with
``backlog_rate_per_s`` below the link's rate (publish to arrival, loaded test machine)."""


def test_a_16_kbit_link_drains_the_backlog_while_live_readings_stay_prompt(
    proxied_edge: EdgeProcess, proxy: Toxiproxy, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    proxy.enabled(False)
    proxied_edge.extra_env["KOTAFLOW_EDGE__BACKLOG_RATE_PER_S"] = "8"  # below the link's ~15/s
    proxied_edge.start()
    publisher = local_publisher(proxied_edge.local_port)
    publish_readings(publisher, devices, 0, 20)
    backlog = 20 * len(devices)
    wait_until(lambda: proxied_edge.queued() == backlog, 30, "the backlog")

    for stream in ("upstream", "downstream"):
        proxy.toxic(f"cap-{stream}", "bandwidth", stream, rate=KBIT16)
    proxy.toxic("latency", "latency", "downstream", latency=300, jitter=100)
    proxy.enabled(True)
    wait_until(lambda: collector.distinct() >= backlog // 4, 60, "the drain to start")
    sent_ms = int(time.time() * 1000)
    publish_readings(publisher, devices, 1000, 1)  # live, while the backlog drains
    live = set(devices)

    def live_arrived() -> bool:
        return all(1000 in collector.by_device().get(d, []) for d in live)

    wait_until(live_arrived, 30, "live readings during the drain")
    delays_s = [(collector.first_ms[(d, 1000)] - sent_ms) / 1000 for d in devices]
    print(f"live delay during a 16 kbit/s drain: max {max(delays_s):.1f} s")
    assert max(delays_s) < LIVE_DELAY_BOUND_S
    assert all(
        int(props[EDGE_RX_PROPERTY]) >= sent_ms for _t, p, props in collector.got if p["n"] == 1000
    )
    assert collector.distinct() < backlog + len(devices)  # live overtook part of the backlog
    wait_until(lambda: collector.distinct() == backlog + len(devices), 120, "the whole backlog")
    for device, numbers in collector.by_device().items():
        older = [n for n in numbers if n < 1000]
        assert older == sorted(set(older)), device  # the backlog in order, once
    publisher.loop_stop()


def test_resets_mid_stream_and_a_hang_lose_nothing(
    proxied_edge: EdgeProcess, proxy: Toxiproxy, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    proxied_edge.extra_env["KOTAFLOW_EDGE__BACKLOG_RATE_PER_S"] = "300"
    proxy.enabled(False)
    proxied_edge.start()
    publisher = local_publisher(proxied_edge.local_port)
    publish_readings(publisher, devices, 0, 150)
    total = 150 * len(devices)
    wait_until(lambda: proxied_edge.queued() == total, 30, "the backlog")

    proxy.enabled(True)
    # Every connection is cut after 4 kB (about 30 messages): mid-stream, mid-packet.
    proxy.toxic("cut", "limit_data", "upstream", bytes=4000)
    wait_until(lambda: collector.distinct() > 100, 60, "progress through the cuts")
    proxy.remove("cut")
    proxy.toxic("hang", "timeout", "upstream", timeout=0)  # data vanishes, nothing resets
    publish_readings(publisher, devices, 150, 20)
    time.sleep(10)  # keepalive (5 s) notices; new connections hang too
    proxy.remove("hang")
    wait_until(lambda: collector.distinct() == total + 20 * len(devices), 90, "everything")
    for device, numbers in collector.by_device().items():
        assert set(numbers) == set(range(170)), device
    wait_until(lambda: proxied_edge.queued() == 0, 15, "the queue to empty")
    publisher.loop_stop()
