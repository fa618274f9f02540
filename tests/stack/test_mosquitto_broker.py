"""The local Mosquitto: a QoS 1 round trip, and a persistent session that keeps what arrives
while its subscriber is away (more than Mosquitto's default queue of 1000 messages).

Clients log in as the accounts the pipeline uses: the gateway publishes on a device topic,
the bridge account reads it (``tests/stack/test_mosquitto_security.py`` pins the ACL)."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deploy.local.mosquitto import Mosquitto
from kotaflow.mqtt import Account, MqttAccess, mqtt_access, wipe_mqtt_session
from kotaflow.settings import Settings

DEADLINE_S = 30.0


def _client(access: MqttAccess, client_id: str) -> mqtt.Client:
    return access.client(client_id)


def _session_properties(expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


class _Inbox:
    """Collects messages a client receives on paho's network thread."""

    def __init__(self, client: mqtt.Client) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        client.on_subscribe = lambda *_args: self.subscribed.set()

    def take(self, count: int) -> list[mqtt.MQTTMessage]:
        got: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self.messages.get(timeout=0.2))
            except queue.Empty:
                continue
        return got


@pytest.fixture
def topic() -> str:
    return f"kotaflow/test-{uuid.uuid4().hex}/telemetry"


@pytest.fixture
def reader(stack: Settings) -> MqttAccess:
    return mqtt_access(stack, Account.BRIDGE)


def _leave_subscribed(reader: MqttAccess, client_id: str, topic: str) -> None:
    """Make a persistent session (expiry 300 s) subscribed to ``topic``, then go offline."""
    first = _client(reader, client_id)
    inbox = _Inbox(first)
    first.connect(reader.host, reader.port, clean_start=True, properties=_session_properties(300))
    first.loop_start()
    first.subscribe(topic, qos=1)
    assert inbox.subscribed.wait(DEADLINE_S)
    first.disconnect()
    first.loop_stop()


@pytest.fixture
def session_id(stack: Settings) -> Iterator[str]:
    """A client id for a persistent session; the session is wiped on teardown, whatever the
    test did (none is left for the broker to queue for, persist and expire later)."""
    client_id = f"test-bridge-{uuid.uuid4().hex[:8]}"
    yield client_id
    wipe_mqtt_session(stack, client_id)


@pytest.fixture
def publisher(stack: Settings) -> Iterator[mqtt.Client]:
    access = mqtt_access(stack, Account.GATEWAY)
    client = _client(access, f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect(access.host, access.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


@pytest.mark.services
def test_qos1_message_round_trips_through_mosquitto(
    reader: MqttAccess, topic: str, publisher: mqtt.Client
) -> None:
    subscriber = _client(reader, f"test-sub-{uuid.uuid4().hex[:8]}")
    inbox = _Inbox(subscriber)
    subscriber.connect(reader.host, reader.port)
    subscriber.loop_start()
    try:
        subscriber.subscribe(topic, qos=1)
        assert inbox.subscribed.wait(DEADLINE_S)

        info = publisher.publish(topic, b'{"t": 21.5}', qos=1)
        info.wait_for_publish(DEADLINE_S)  # returns once the broker's PUBACK arrived

        [received] = inbox.take(1)
        assert received.payload == b'{"t": 21.5}'
        assert received.qos == 1
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()


@pytest.mark.services
def test_offline_persistent_session_keeps_more_than_default_queue(
    reader: MqttAccess, topic: str, publisher: mqtt.Client, session_id: str
) -> None:
    """Mosquitto's default max_queued_messages (1000) would drop the rest; ours keeps all."""
    client_id = session_id
    count = 1500
    _leave_subscribed(reader, client_id, topic)

    sent = [publisher.publish(topic, f"{i}".encode(), qos=1) for i in range(count)]
    for info in sent:
        info.wait_for_publish(DEADLINE_S)

    again = _client(reader, client_id)
    inbox = _Inbox(again)
    again.connect(reader.host, reader.port, clean_start=False, properties=_session_properties(0))
    again.loop_start()
    try:
        got = inbox.take(count)
    finally:
        again.disconnect()
        again.loop_stop()
    assert sorted(int(m.payload) for m in got) == list(range(count))


@pytest.mark.services
def test_a_wiped_session_is_gone(
    stack: Settings, reader: MqttAccess, topic: str, session_id: str
) -> None:
    """What every test and benchmark that makes a persistent session relies on at teardown."""
    _leave_subscribed(reader, session_id, topic)

    assert wipe_mqtt_session(stack, session_id)

    again = _client(reader, session_id)
    present: queue.Queue[bool] = queue.Queue()
    again.on_connect = lambda _c, _u, flags, _rc, _p: present.put(flags.session_present)
    again.connect(reader.host, reader.port, clean_start=False, properties=_session_properties(0))
    again.loop_start()
    try:
        assert present.get(timeout=DEADLINE_S) is False  # no subscriptions, no queue
    finally:
        again.disconnect()
        again.loop_stop()


def test_rendered_config_follows_settings_and_sizes_the_queue(tmp_path: Path) -> None:
    settings = Settings(
        mqtt={"host": "127.0.0.1", "port": 18830, "tls_port": 18831},
        stack={"state_dir": tmp_path / "state", "cache_dir": tmp_path / "cache"},
    )
    broker = Mosquitto(settings)
    text = broker._config_text()
    state = tmp_path / "state"
    assert "listener 18830 127.0.0.1" in text
    assert "listener 18831 127.0.0.1" in text
    assert "max_queued_messages 1000000" in text
    assert "\nautosave_interval 1\n" in text  # a kill -9 loses at most ~2 s of messages
    assert "\nautosave_on_changes" not in text  # counting changes is quadratic in the backlog
    assert f"persistence_location {state / 'mosquitto' / 'data'}/" in text
    assert "allow_anonymous false" in text
    assert f"password_file {state / 'mosquitto' / 'passwd'}" in text
    assert f"acl_file {state / 'mosquitto' / 'acl'}" in text
    assert f"cafile {state / 'tls' / 'ca.crt'}" in text
    assert "${" not in text
