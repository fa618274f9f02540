"""The production Mosquitto config, started for real (the local stack's build of the
production version), with the accounts ``kotaflow devices credentials`` and the certificate
``kotaflow devices tls`` generate - as the compose file does. Every client connects over TLS
and verifies the broker.

The broker: tests/support/production_mosquitto.py. MQTT 5 reason codes tell refused
connects, subscribes and publishes apart from lost ones, so nothing waits for something not
to happen.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.topics import SUBSCRIPTIONS
from tests.support.production_mosquitto import (
    CONF,
    CREDENTIALS_DIR,
    DEPLOY,
    TLS_DIR,
    Broker,
    listener_blocks,
    production_broker,
)

DEADLINE_S = 15.0
NOT_AUTHORIZED = 135
ACCEPTED = {0, 16}
"""PUBACK success, and success with "no matching subscribers"."""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with production_broker(tmp_path_factory.mktemp("mosquitto")) as started:
        yield started


@dataclass
class Client:
    port: int
    user: str | None
    password: str | None
    ca_file: Path | None
    """None: plaintext MQTT."""
    connack: queue.Queue[int] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    acks: queue.Queue[int] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{self.user}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if self.user is not None:
            self.mqtt.username_pw_set(self.user, self.password)
        if self.ca_file is not None:
            self.mqtt.tls_set(ca_certs=str(self.ca_file))  # verifies the name, 127.0.0.1
        self.mqtt.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(_code(rc))
        self.mqtt.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.mqtt.on_publish = lambda _c, _u, _mid, rc, _p: self.acks.put(_code(rc))
        self.mqtt.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(
            [_code(r) for r in rcs]
        )

    def connect(self) -> int:
        self.mqtt.connect("127.0.0.1", self.port)
        self.mqtt.loop_start()
        return self.connack.get(timeout=DEADLINE_S)

    def subscribe(self, *filters: str) -> list[int]:
        self.mqtt.subscribe([(f, 1) for f in filters])
        return self.subacks.get(timeout=DEADLINE_S)

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        self.mqtt.publish(topic, payload, qos=1)
        return self.acks.get(timeout=DEADLINE_S)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def _code(value: Any) -> int:
    return int(value.value) if isinstance(value, ReasonCode) else int(value)


@pytest.fixture
def login(broker: Broker) -> Iterator[Any]:
    """``login(user)``: a connected client with that account's generated password."""
    made: list[Client] = []

    def connect(user: str | None, password: str | None = None) -> tuple[Client, int]:
        password = password or broker.passwords.get(user or "")
        client = Client(broker.port, user, password, broker.ca_file)
        made.append(client)
        return client, client.connect()

    yield connect
    for client in made:
        client.close()


def _assert_nothing_delivered(client: Client) -> None:
    """A round trip on the client's own connection: the broker writes a client's packets in
    order, so any message routed to it before this PUBACK has arrived by now."""
    client.publish("kotaflow/sync/none")
    assert client.messages.empty()


def test_anonymous_and_wrong_passwords_are_refused(login: Any) -> None:
    assert login(None)[1] == NOT_AUTHORIZED
    assert login("kotaflow-bridge", "wrong")[1] == NOT_AUTHORIZED
    assert login("not-a-device", "whatever")[1] == NOT_AUTHORIZED


def test_device_and_network_server_uplinks_reach_the_bridges_shared_subscription(
    login: Any,
) -> None:
    bridge, connected = login("kotaflow-bridge")
    assert connected == 0
    granted = bridge.subscribe(*(f"$share/kotaflow-bridge/{f}" for f in SUBSCRIPTIONS))
    assert granted == [1] * len(SUBSCRIPTIONS)
    uplinks = {
        "rtg-aq-01": "kotaflow/rtg-aq-01/telemetry",
        "kotaflow-chirpstack": "application/manggarai/device/0011223344556677/event/up",
        "kotaflow-tts": "v3/manggarai@ttn/devices/rtg-rl-01/up",
        "kotaflow-gateway": "kotaflow/rtg-rg-01/senml",
    }
    for account, topic in uplinks.items():
        publisher, connected = login(account)
        assert connected == 0, account
        assert publisher.publish(topic) == 0, account
    received = {bridge.messages.get(timeout=DEADLINE_S)[0] for _ in uplinks}
    assert received == set(uplinks.values())


def test_a_device_publishes_only_as_itself_and_reads_nothing(login: Any) -> None:
    device, connected = login("rtg-aq-01")
    assert connected == 0
    assert device.publish("kotaflow/rtg-aq-01/senml") in ACCEPTED
    assert device.publish("kotaflow/rtg-aq-02/telemetry") == NOT_AUTHORIZED
    assert device.publish("application/x/device/0011223344556677/event/up") == NOT_AUTHORIZED
    device.subscribe("kotaflow/+/telemetry")
    other, _ = login("rtg-aq-02")
    assert other.publish("kotaflow/rtg-aq-02/telemetry") in ACCEPTED
    _assert_nothing_delivered(device)


def test_a_disabled_device_has_no_account(broker: Broker) -> None:
    assert "rtg-aq-04" not in broker.passwords  # "Kantor Bupati (decommissioned)"
    assert "rtg-aq-01" in broker.passwords


def test_the_bridge_cannot_write_and_the_health_account_only_connects(login: Any) -> None:
    bridge, _ = login("kotaflow-bridge")
    assert bridge.publish("kotaflow/rtg-aq-01/telemetry") == NOT_AUTHORIZED
    health, connected = login("kotaflow-health")
    assert connected == 0
    assert health.publish("kotaflow/rtg-aq-01/telemetry") == NOT_AUTHORIZED
    health.subscribe("kotaflow/+/telemetry")
    gateway, _ = login("kotaflow-gateway")
    assert gateway.publish("kotaflow/rtg-aq-01/telemetry") in ACCEPTED
    _assert_nothing_delivered(health)


def test_the_broker_speaks_only_tls(broker: Broker) -> None:
    """The one listener refuses a plaintext MQTT connect: nothing crosses the wire in clear."""
    assert [
        line
        for line in CONF.read_text(encoding="utf-8").splitlines()
        if line.startswith("listener")
    ] == ["listener 8883 0.0.0.0"]
    client = Client(broker.port, "kotaflow-health", broker.passwords["kotaflow-health"], None)
    client.mqtt.loop_start()
    try:
        client.mqtt.connect("127.0.0.1", broker.port)
        with pytest.raises(queue.Empty):
            client.connack.get(timeout=2.0)  # the broker waits for a TLS ClientHello
    except OSError:
        pass  # or it resets the connection: either way, no CONNACK
    finally:
        client.close()


def test_the_compose_health_check_logs_in_over_tls(broker: Broker) -> None:
    """The mosquitto service's health command, run against this broker with its paths."""
    mosquitto_pub = shutil.which("mosquitto_pub")
    if mosquitto_pub is None:
        pytest.skip("mosquitto_pub is not installed")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    command = compose["services"]["mosquitto"]["healthcheck"]["test"][1]
    command = command.replace("$$", "$").replace(TLS_DIR, str(broker.tls))
    command = command.replace(CREDENTIALS_DIR, str(broker.credentials))
    command = command.replace("-p 8883", f"-p {broker.port}")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    wrong_ca = command.replace(str(broker.ca_file), "/etc/ssl/certs/ca-certificates.crt")
    done = subprocess.run(["sh", "-c", wrong_ca], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0  # a certificate that does not verify fails the check


def test_sessions_are_named_after_the_account_on_the_one_listener() -> None:
    """So no device can resume (and empty) the bridge's session; below ``listener``, since
    above it Mosquitto would open another, plaintext listener on 1883 for the option."""
    blocks = listener_blocks(CONF.read_text(encoding="utf-8"))
    assert "use_username_as_clientid true" in blocks["listener 8883 0.0.0.0"]
    assert not any(line.startswith("use_username_as_clientid") for line in blocks[""])
