"""The edge between two real Mosquitto brokers with its uplink cut: nothing is lost.

The central broker is a private one configured as the stack configures it (accounts and
ACL generated from the registry), so the edge logs in with its kecamatan's own account.
"""

from __future__ import annotations

import threading
import time

import pytest

from devices.catalogue import load_catalogue
from devices.registry import load_registry
from edge.gateway import DELETE_EVERY_S
from edge.queue import EdgeQueue
from kotaflow.wire.raw import EDGE_NAME_PROPERTY, EDGE_RX_PROPERTY
from tests.support.edge_harness import (
    Collector,
    EdgeProcess,
    kecamatan_devices,
    local_publisher,
    publish_readings,
    wait_until,
)
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.services


def test_readings_queued_during_an_outage_all_arrive_in_order_with_the_edge_time(
    edge_process: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    edge_process.start()
    publisher = local_publisher(edge_process.local_port)
    before_ms = int(time.time() * 1000)
    publish_readings(publisher, devices, 0, 200)
    total = 200 * len(devices)
    wait_until(lambda: edge_process.queued() == total, 30, "the edge to queue the backlog")
    assert collector.count() == 0  # the link is down

    relay.up()
    wait_until(lambda: collector.distinct() == total, 60, "the backlog at the central broker")
    for device, numbers in collector.by_device().items():
        assert numbers == list(range(200)), device  # in order, none twice
    for _topic, _payload, props in collector.got:
        assert int(props[EDGE_RX_PROPERTY]) >= before_ms
        assert props[EDGE_NAME_PROPERTY] == edge_process.name
    wait_until(lambda: edge_process.queued() == 0, 10, "the queue to empty after the PUBACKs")

    publish_readings(publisher, devices, 200, 5)  # live again
    wait_until(lambda: collector.distinct() == total + 5 * len(devices), 10, "live readings")
    publisher.loop_stop()


def test_kill_9_of_the_edge_during_the_drain_loses_nothing(
    edge_process: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    edge_process.extra_env["KOTAFLOW_EDGE__BACKLOG_RATE_PER_S"] = "400"
    edge_process.start()
    publisher = local_publisher(edge_process.local_port)
    per_device = 3000 // len(devices)
    total = per_device * len(devices)
    publish_readings(publisher, devices, 0, per_device)
    wait_until(lambda: edge_process.queued() == total, 60, "the edge to queue the backlog")

    relay.up()
    wait_until(lambda: collector.count() >= total // 3, 60, "a third of the drain")
    edge_process.kill()
    arrived_before = collector.distinct()
    assert arrived_before < total
    edge_process.start()
    wait_until(lambda: collector.distinct() == total, 90, "the rest after the restart")
    for device, numbers in collector.by_device().items():
        assert set(numbers) == set(range(per_device)), device
    wait_until(lambda: edge_process.queued() == 0, 15, "the queue to empty")
    # Duplicates are what was in flight (max_in_flight, 20; 100 allowed) plus what was confirmed but
    # not yet deleted (deletes are batched every DELETE_EVERY_S at 400 messages/s).
    duplicates = collector.count() - total
    assert duplicates <= 100 + 400 * (DELETE_EVERY_S + 0.5), duplicates
    publisher.loop_stop()


def test_a_hang_style_outage_is_detected_and_nothing_is_lost(
    edge_process: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    relay.up()
    edge_process.start()
    publisher = local_publisher(edge_process.local_port)
    publish_readings(publisher, devices, 0, 20)
    wait_until(lambda: collector.distinct() == 20 * len(devices), 30, "live readings")

    relay.hang()  # packets vanish, no reset: only keepalive notices
    publish_readings(publisher, devices, 20, 100)
    time.sleep(12)  # > 1.5 x keepalive (5 s): the edge gave the connection up
    assert collector.distinct() == 20 * len(devices)
    relay.down()  # the hung connections die as a NAT timeout would end them
    relay.up()
    wait_until(lambda: collector.distinct() == 120 * len(devices), 60, "the rest after the hang")
    for device, numbers in collector.by_device().items():
        assert sorted(set(numbers)) == list(range(120)), device
    assert "central broker 127.0.0.1" in edge_process.log_text()
    assert " lost (" in edge_process.log_text()  # noticed by keepalive, then reconnected
    publisher.loop_stop()


def test_a_message_the_central_acl_refuses_is_kept_aside_and_the_rest_flow(
    edge_process: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    kecamatan, devices = kecamatan_devices()
    registry = load_registry(load_catalogue())
    stranger = next(d.id for d in registry if d.kecamatan != kecamatan and d.dev_eui is None)
    relay.up()
    edge_process.start()
    publisher = local_publisher(edge_process.local_port)
    publish_readings(publisher, [stranger], 0, 1)
    publish_readings(publisher, devices, 0, 3)
    wait_until(lambda: collector.distinct() == 3 * len(devices), 30, "the kecamatan's readings")

    def refused() -> int:
        q = EdgeQueue(edge_process.queue_file, 1 << 40)
        try:
            return q.stats().refused
        finally:
            q.close()

    wait_until(lambda: refused() == 1 and edge_process.queued() == 0, 15, "the refusal")
    assert stranger not in collector.by_device()
    publisher.loop_stop()


def test_a_full_budget_leaves_the_rest_with_the_local_broker_until_there_is_room(
    edge_process: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    edge_process.extra_env["KOTAFLOW_EDGE__BUDGET_BYTES"] = str(1 << 16)  # ~500 messages
    edge_process.start()
    publisher = local_publisher(edge_process.local_port)
    publish_readings(publisher, devices, 0, 125)
    total = 125 * len(devices)
    wait_until(lambda: "pausing the local intake" in edge_process.log_text(), 30, "a full queue")
    time.sleep(1)  # paused: nothing more is taken while the link is down
    queued = edge_process.queued()
    assert 0 < queued < total
    assert "resuming" not in edge_process.log_text()  # not before the queue has room

    relay.up()
    wait_until(lambda: collector.distinct() == total, 90, "everything, the rest after resuming")
    for device, numbers in collector.by_device().items():
        assert sorted(set(numbers)) == list(range(125)), device
    assert "resuming" in edge_process.log_text()
    publisher.loop_stop()


def test_kill_9_of_the_edge_while_devices_publish_loses_nothing(
    edge_process: EdgeProcess, relay: TcpRelay, collector: Collector
) -> None:
    _, devices = kecamatan_devices()
    edge_process.start()
    publisher = local_publisher(edge_process.local_port)
    per_device = 250
    total = per_device * len(devices)
    publishing = threading.Thread(
        target=publish_readings, args=(publisher, devices, 0, per_device), daemon=True
    )
    publishing.start()
    wait_until(lambda: edge_process.queued() > total // 4, 30, "intake under way")
    edge_process.kill()  # between commits, acks and arrivals: wherever it was
    publishing.join(60)
    edge_process.start()  # the local broker redelivers what was not acked
    relay.up()
    wait_until(lambda: collector.distinct() == total, 90, "every reading")
    for device, numbers in collector.by_device().items():
        assert sorted(set(numbers)) == list(range(per_device)), device
    publisher.loop_stop()
