"""No device account can receive, divert or delay another device's messages (issue 16,
case 2): device connections subscribed to every ``$share/...`` and plain filter they can
think of take nothing away from the bridge."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as paho
import pytest
from bridge_support import (
    BridgeRun,
    Publisher,
    TopicReader,
    ids_of,
    resumed_session,
    traffic,
    wait_for_log,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.fleet import load_fleet
from devices.topics import SUBSCRIPTIONS
from kotaflow.mqtt import Account, mqtt_access

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

DEVICES, PER_DEVICE = 400, 1


def _hostile_filters(run: BridgeRun) -> list[str]:
    """Every share group a rogue might guess (the old default, the client id, the tests'
    old per-run group), over every bridge filter and '#', plus the plain filters."""
    groups = ["kotaflow-bridge", run.client_id(1), f"test-{run.rid}", "bridge"]
    filters = [*SUBSCRIPTIONS, "#", "kotaflow/#", "kotaflow-bridge/#"]
    return [f"$share/{g}/{f}" for g in groups for f in filters] + filters


@contextmanager
def _rogues(run: BridgeRun, connections: int) -> Iterator[list[paho.Client]]:
    """``connections`` device-account connections, each subscribed to every hostile filter
    at QoS 1; clean sessions that expire on disconnect, so nothing stays on the broker."""
    devices = [d.id for d in load_fleet(run.settings).registry.devices if d.enabled]
    clients: list[paho.Client] = []
    try:
        for i in range(connections):
            device = devices[i % len(devices)]
            access = mqtt_access(run.settings, device)
            client = access.client(f"rogue-{run.rid}-{i}")
            granted: list[int] = []
            client.on_subscribe = lambda _c, _u, _m, codes, _p, g=granted: g.extend(
                c.value for c in codes
            )
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            client.connect(access.host, access.port, clean_start=True, properties=props)
            client.loop_start()
            clients.append(client)
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in _hostile_filters(run)])
            deadline = time.monotonic() + 10
            while not granted and time.monotonic() < deadline:
                time.sleep(0.02)
            assert granted, "the broker never answered the rogue's SUBSCRIBE"
        yield clients
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("connections", [1, 9])
async def test_rogue_device_subscriptions_take_nothing_from_the_bridge(
    bridge_run: BridgeRun, connections: int
) -> None:
    run = bridge_run
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    expected = {f"{run.device(d)}:{s}" for d in range(DEVICES) for s in range(PER_DEVICE)}
    with _rogues(run, connections):
        publisher = Publisher(run.settings, f"test-pub-{run.rid}")
        publisher.publish(traffic(run, DEVICES, PER_DEVICE))
        publisher.finish()
        async with TopicReader(run.settings, run.raw_topic) as reader:
            await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=30)
    lost = expected - set(ids_of(reader.records))
    assert not lost, f"{len(lost)} of {len(expected)} lost"


def _resume_as_a_device(run: BridgeRun, client_id: str) -> bool:
    """Connect with a device's account and ``client_id``, keeping the session; whether the
    broker resumed a session (session present)."""
    device = next(d.id for d in load_fleet(run.settings).registry.devices if d.enabled)
    with resumed_session(run, device, client_id) as present:
        time.sleep(1)  # long enough for the broker to deliver a queue to it
    return present


@pytest.mark.timeout(90)
async def test_a_device_account_cannot_take_over_the_bridges_session(
    production_bridge_run: BridgeRun,
) -> None:
    """On the production broker (use_username_as_clientid: a session is named after its
    account), a device that sends the bridge's client id, or its account's name, gets a
    session of its own: the bridge's queue stays whole. The local stack's loopback listener
    has no such option (tests log in there from many client ids): docs/bridge.md."""
    run = production_bridge_run
    bridge_id = run.client_id(1)
    bridge = run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(timeout=30) == 0
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    publisher.publish(traffic(run, 5, 4))  # queued in the bridge's session
    publisher.finish()
    assert not _resume_as_a_device(run, bridge_id), "the device got the bridge's session"
    _resume_as_a_device(run, str(Account.BRIDGE))  # the session's name here: the device's own
    run.spawn_bridge(2, session=1)
    expected = {f"{run.device(d)}:{s}" for d in range(5) for s in range(4)}
    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=30)
