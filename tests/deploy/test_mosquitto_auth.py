"""The production Mosquitto config, started for real (Debian's mosquitto) through its entrypoint.

Only its container paths and port are rewritten; users come from the entrypoint, rights
from ``deploy/mosquitto/acl``. MQTT 5 reason codes tell refused connects and publishes
apart from lost ones, so nothing here waits for something not to happen.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PASSWORDS = {
    "KOTAFLOW_MQTT_BRIDGE_PASSWORD": "bridge-pw",
    "KOTAFLOW_MQTT_GATEWAY_PASSWORD": "gateway-pw",
    "KOTAFLOW_MQTT_HEALTH_PASSWORD": "health-pw",
    "KOTAFLOW_MQTT_DEVICE_PASSWORDS": "rtg-aq-01:device-pw",
}
DEADLINE_S = 15.0
NOT_AUTHORIZED = 135
ACCEPTED = {0, 16}
"""PUBACK success, and success with "no matching subscribers"."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).is_file():
        pytest.skip("mosquitto is not installed")
    work = tmp_path_factory.mktemp("mosquitto")
    port = _free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/data/", f"{work}/").replace(
        "/mosquitto/config/acl", str(DEPLOY / "acl")
    )
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    (work / "mosquitto.conf").write_text(conf + f"\nuser {getpass.getuser()}\n")
    env = {
        **os.environ,
        **PASSWORDS,
        "PATH": os.environ.get("PATH", "") + ":/usr/sbin",
        "MOSQUITTO_DATA": str(work),
        "MOSQUITTO_CONF": str(work / "mosquitto.conf"),
    }
    log = (work / "broker.log").open("w")
    proc = subprocess.Popen(["sh", str(DEPLOY / "entrypoint.sh")], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not start: {(work / 'broker.log').read_text()}")
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@dataclass
class Client:
    port: int
    user: str | None
    password: str | None
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
def clients(broker: int) -> Iterator[dict[str, Client]]:
    made: dict[str, Client] = {}
    yield made
    for client in made.values():
        client.close()


def _client(
    clients: dict[str, Client], port: int, user: str | None, password: str | None
) -> Client:
    client = Client(port, user, password)
    clients[f"{user}-{len(clients)}"] = client
    return client


def test_anonymous_and_wrong_passwords_are_refused(broker: int, clients: dict[str, Client]) -> None:
    assert _client(clients, broker, None, None).connect() == NOT_AUTHORIZED
    assert _client(clients, broker, "kotaflow-bridge", "wrong").connect() == NOT_AUTHORIZED


def test_gateway_uplinks_reach_the_bridges_shared_subscription(
    broker: int, clients: dict[str, Client]
) -> None:
    bridge = _client(clients, broker, "kotaflow-bridge", "bridge-pw")
    assert bridge.connect() == 0
    filters = ["kotaflow/+/telemetry", "application/+/device/+/event/up", "v3/+/devices/+/up"]
    assert bridge.subscribe(*(f"$share/kotaflow-bridge/{f}" for f in filters)) == [1, 1, 1]
    gateway = _client(clients, broker, "kotaflow-gateway", "gateway-pw")
    assert gateway.connect() == 0
    topics = [
        "kotaflow/rtg-rg-01/telemetry",
        "application/manggarai/device/0011223344556677/event/up",
        "v3/manggarai@ttn/devices/rtg-rl-01/up",
    ]
    for topic in topics:
        assert gateway.publish(topic) == 0
    received = {bridge.messages.get(timeout=DEADLINE_S)[0] for _ in topics}
    assert received == set(topics)


def test_a_gateway_cannot_read_and_the_bridge_cannot_write(
    broker: int, clients: dict[str, Client]
) -> None:
    bridge = _client(clients, broker, "kotaflow-bridge", "bridge-pw")
    gateway = _client(clients, broker, "kotaflow-gateway", "gateway-pw")
    assert bridge.connect() == 0
    assert gateway.connect() == 0
    bridge.subscribe("kotaflow/+/telemetry")
    gateway.subscribe("kotaflow/+/telemetry")  # granted, but nothing may be delivered
    assert bridge.publish("kotaflow/rtg-aq-01/telemetry") == NOT_AUTHORIZED
    assert gateway.publish("kotaflow/rtg-aq-03/telemetry") == 0
    assert bridge.messages.get(timeout=DEADLINE_S)[0] == "kotaflow/rtg-aq-03/telemetry"
    _assert_nothing_delivered(gateway)


def _assert_nothing_delivered(client: Client) -> None:
    """A round trip on the client's own connection: the broker writes a client's packets in
    order, so any message routed to it before this PUBACK has arrived by now."""
    client.publish("kotaflow/sync/none")
    assert client.messages.empty()


def test_a_device_account_publishes_only_as_itself(broker: int, clients: dict[str, Client]) -> None:
    device = _client(clients, broker, "rtg-aq-01", "device-pw")
    assert device.connect() == 0
    assert device.publish("kotaflow/rtg-aq-01/telemetry") in ACCEPTED
    assert device.publish("kotaflow/rtg-aq-01/senml") in ACCEPTED
    assert device.publish("kotaflow/rtg-aq-02/telemetry") == NOT_AUTHORIZED


def test_the_health_account_reads_the_broker_uptime_only(
    broker: int, clients: dict[str, Client]
) -> None:
    health = _client(clients, broker, "kotaflow-health", "health-pw")
    assert health.connect() == 0
    assert health.subscribe("$SYS/broker/uptime") == [1]
    topic, _ = health.messages.get(timeout=DEADLINE_S)
    assert topic == "$SYS/broker/uptime"
    health.subscribe("kotaflow/+/telemetry")
    gateway = _client(clients, broker, "kotaflow-gateway", "gateway-pw")
    assert gateway.connect() == 0
    assert gateway.publish("kotaflow/rtg-aq-01/telemetry") in ACCEPTED
    _assert_nothing_delivered(health)
