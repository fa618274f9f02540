"""The local Mosquitto's security, against the running broker: who may connect, publish and
read, and TLS that is verified.

MQTT 5 reason codes tell a refusal apart from a lost packet: a refused CONNECT is CONNACK
0x87 (Not authorized) and a publish the ACL denies is PUBACK 0x87, so no test waits for
something not to happen. (Mosquitto 2.0 acks a denied MQTT 3.1.1 publish as if it went
through and drops it; kotaflow's clients all speak MQTT 5.)
"""

from __future__ import annotations

import queue
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from deploy.local.mosquitto import Mosquitto
from deploy.local.tls import ensure_tls
from devices.fleet import load_fleet
from devices.registry import PACKAGED_REGISTRY
from kotaflow.mqtt import Account, MqttAccess, MqttAccessError, MqttLogin, mqtt_access
from kotaflow.settings import Settings

pytestmark = pytest.mark.services

DEADLINE_S = 15.0
NOT_AUTHORIZED = 0x87
ACCEPTED = {0x00, 0x10}
"""PUBACK success, and success with "no matching subscribers"."""


class Client:
    """A paho client whose CONNACK, PUBACK and SUBACK codes and messages land in queues."""

    def __init__(self, access: MqttAccess, client_id: str | None = None) -> None:
        self.access = access
        self.connacks: queue.Queue[int] = queue.Queue()
        self.pubacks: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnects: queue.Queue[int] = queue.Queue()
        self.paho = access.client(client_id or f"test-sec-{uuid.uuid4().hex[:10]}")
        self.paho.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.put(_code(rc))
        self.paho.on_publish = lambda _c, _u, _m, rc, _p: self.pubacks.put(_code(rc))
        self.paho.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.put(
            [_code(rc) for rc in rcs]
        )
        self.paho.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.paho.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.put(_code(rc))

    def connect(self) -> int:
        self.paho.connect(self.access.host, self.access.port)
        self.paho.loop_start()
        return self.connacks.get(timeout=DEADLINE_S)

    def publish(self, topic: str, payload: bytes = b'{"pm25": 12}') -> int:
        self.paho.publish(topic, payload, qos=1)
        return self.pubacks.get(timeout=DEADLINE_S)

    def subscribe(self, *filters: str) -> list[int]:
        self.paho.subscribe([(f, 1) for f in filters])
        return self.subacks.get(timeout=DEADLINE_S)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def _code(value: object) -> int:
    return int(value.value) if isinstance(value, ReasonCode) else int(str(value))


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def _connected(clients: list[Client], access: MqttAccess, client_id: str | None = None) -> Client:
    client = Client(access, client_id)
    clients.append(client)
    assert client.connect() == 0, f"{access.username} could not connect"
    return client


def _two_devices(stack: Settings) -> tuple[str, str]:
    enabled = [d.id for d in load_fleet(stack).registry if d.enabled]
    return enabled[0], enabled[1]


def test_an_anonymous_connection_is_refused(stack: Settings, clients: list[Client]) -> None:
    anonymous = Client(mqtt_access(stack, Account.BRIDGE).as_login(None))
    clients.append(anonymous)
    assert anonymous.connect() == NOT_AUTHORIZED


def test_a_wrong_password_is_refused(stack: Settings, clients: list[Client]) -> None:
    device, _ = _two_devices(stack)
    wrong = MqttLogin(device, SecretStr("not-" + uuid.uuid4().hex))
    client = Client(mqtt_access(stack, device).as_login(wrong))
    clients.append(client)
    assert client.connect() == NOT_AUTHORIZED


def test_a_device_publishes_only_on_its_own_topics(stack: Settings, clients: list[Client]) -> None:
    a, b = _two_devices(stack)
    device = _connected(clients, mqtt_access(stack, a))
    assert device.publish(f"kotaflow/{a}/telemetry") in ACCEPTED
    assert device.publish(f"kotaflow/{a}/senml", b"[]") in ACCEPTED
    assert device.publish(f"kotaflow/{b}/telemetry") == NOT_AUTHORIZED
    assert device.publish(f"kotaflow/{b}/senml", b"[]") == NOT_AUTHORIZED
    assert device.publish("application/manggarai/device/0011223344556677/event/up") == (
        NOT_AUTHORIZED
    )


def test_only_the_bridge_reads_device_topics_and_it_cannot_publish(
    stack: Settings, clients: list[Client]
) -> None:
    a, b = _two_devices(stack)
    group = f"test-sec-{uuid.uuid4().hex[:8]}"
    bridge = _connected(clients, mqtt_access(stack, Account.BRIDGE))
    assert bridge.subscribe(f"$share/{group}/kotaflow/{a}/telemetry") == [1]
    snooper = _connected(clients, mqtt_access(stack, b))
    snooper.subscribe(f"kotaflow/{a}/telemetry")  # Mosquitto 2.0 grants it; reads are checked
    device = _connected(clients, mqtt_access(stack, a))
    payload = f'{{"pm25": 1, "nonce": "{uuid.uuid4().hex}"}}'.encode()
    assert device.publish(f"kotaflow/{a}/telemetry", payload) in ACCEPTED
    while bridge.messages.get(timeout=DEADLINE_S) != (f"kotaflow/{a}/telemetry", payload):
        pass  # someone else's simulator may publish as the same device meanwhile
    # The broker writes to a client in order: once the snooper's own PUBACK is back, any
    # message routed to it before would have arrived.
    assert snooper.publish(f"kotaflow/{b}/telemetry") in ACCEPTED
    assert snooper.messages.empty()
    assert bridge.publish(f"kotaflow/{a}/telemetry") == NOT_AUTHORIZED


def test_network_server_accounts_publish_only_their_own_tree(
    stack: Settings, clients: list[Client]
) -> None:
    a, _ = _two_devices(stack)
    chirpstack = _connected(clients, mqtt_access(stack, Account.CHIRPSTACK))
    assert chirpstack.publish("application/manggarai/device/0011223344556677/event/up") in (
        ACCEPTED
    )
    assert chirpstack.publish(f"kotaflow/{a}/telemetry") == NOT_AUTHORIZED
    assert chirpstack.publish("v3/manggarai@kotaflow/devices/x/up") == NOT_AUTHORIZED
    tts = _connected(clients, mqtt_access(stack, Account.TTS))
    assert tts.publish("v3/manggarai@kotaflow/devices/x/up") in ACCEPTED
    assert tts.publish("application/manggarai/device/0011223344556677/event/up") == (NOT_AUTHORIZED)
    health = _connected(clients, mqtt_access(stack, Account.HEALTH))
    assert health.publish(f"kotaflow/{a}/telemetry") == NOT_AUTHORIZED


def test_tls_listener_is_verified_against_the_stacks_ca(
    stack: Settings, clients: list[Client]
) -> None:
    secure = stack.model_copy(update={"mqtt": stack.mqtt.model_copy(update={"tls": True})})
    access = mqtt_access(secure, Account.BRIDGE)
    assert access.port == stack.mqtt.tls_port
    assert access.ca_file is not None
    assert _connected(clients, access).subscribe("kotaflow/+/telemetry") == [1]
    anonymous = Client(access.as_login(None))
    clients.append(anonymous)
    assert anonymous.connect() == NOT_AUTHORIZED


def test_tls_with_an_untrusted_ca_is_refused(stack: Settings, tmp_path: Path) -> None:
    other_ca = ensure_tls(tmp_path, ["127.0.0.1"], lambda _line: None).ca_cert
    secure = stack.mqtt.model_copy(update={"tls": True, "ca_file": other_ca})
    access = mqtt_access(stack.model_copy(update={"mqtt": secure}), Account.BRIDGE)
    client = Client(access)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.paho.connect(access.host, access.port)


def test_tls_without_the_ca_uses_the_system_store_which_does_not_trust_the_broker(
    stack: Settings,
) -> None:
    access = mqtt_access(stack, Account.BRIDGE)
    system_trust = MqttAccess(access.host, stack.mqtt.tls_port, 10, tls=True, login=access.login)
    with pytest.raises(ssl.SSLCertVerificationError):
        system_trust.client("test-sec-system-ca").connect(system_trust.host, system_trust.port)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _private_broker_settings(stack: Settings, tmp_path: Path, **more: object) -> Settings:
    """Own ports and state dir; the stack's build of Mosquitto."""
    state = {"state_dir": tmp_path / "state", "cache_dir": stack.stack.cache_dir}
    return Settings(
        mqtt={"port": _free_port(), "tls_port": _free_port()},  # type: ignore[arg-type]
        stack=state,  # type: ignore[arg-type]
        **more,  # type: ignore[arg-type]
    )


def test_on_tls_a_device_cannot_take_the_bridges_client_id_but_loopback_shares_accounts(
    stack: Settings, tmp_path: Path, clients: list[Client]
) -> None:
    """On a private broker from the local template: the TLS listener names sessions after
    the account (a device sending the bridge's client id does not evict the bridge); the
    loopback listener keeps client ids, so one account connects from many at once."""
    private = _private_broker_settings(stack, tmp_path)
    broker = Mosquitto(private)
    broker.start(lambda _line: None)
    try:
        secure = private.model_copy(update={"mqtt": private.mqtt.model_copy(update={"tls": True})})
        bridge = _connected(clients, mqtt_access(secure, Account.BRIDGE), "kotaflow-bridge-1")
        device, _ = _two_devices(secure)
        _connected(clients, mqtt_access(secure, device), "kotaflow-bridge-1")
        assert bridge.publish("kotaflow-bridge/probe") in ACCEPTED
        assert bridge.disconnects.empty(), "the device's connect evicted the bridge"
        first = _connected(clients, mqtt_access(private, Account.GATEWAY))
        _connected(clients, mqtt_access(private, Account.GATEWAY))
        assert first.publish(f"kotaflow/{device}/telemetry") in ACCEPTED
        assert first.disconnects.empty(), "two client ids of one account evicted each other"
    finally:
        broker.stop(lambda _line: None)


def test_a_new_device_can_publish_after_stack_up_without_a_broker_restart(
    stack: Settings, tmp_path: Path, clients: list[Client]
) -> None:
    """On a private broker (own state dir and ports): ``up`` regenerates the accounts from
    the registry and the running Mosquitto reloads them on SIGHUP."""
    registry = yaml.safe_load(PACKAGED_REGISTRY.read_text(encoding="utf-8"))
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(yaml.safe_dump(registry), encoding="utf-8")
    private = _private_broker_settings(stack, tmp_path, registry_file=registry_file)
    broker = Mosquitto(private)
    broker.start(lambda _line: None)
    try:
        newcomer = {**registry["devices"][0], "id": "rtg-aq-99", "name": "Baru"}
        newcomer.pop("dev_eui", None)
        newcomer.pop("tts_device_id", None)
        with pytest.raises(MqttAccessError, match="rtg-aq-99"):
            mqtt_access(private, "rtg-aq-99")
        registry_file.write_text(
            yaml.safe_dump({**registry, "devices": [*registry["devices"], newcomer]}),
            encoding="utf-8",
        )
        pid = broker.status().pid
        lines: list[str] = []
        Mosquitto(private).start(lines.append)
        assert broker.status().pid == pid
        assert any("reloaded" in line for line in lines), lines
        access = mqtt_access(private, "rtg-aq-99")
        deadline = time.monotonic() + DEADLINE_S
        while True:  # the broker reloads its files on SIGHUP, asynchronously
            device = Client(access)
            clients.append(device)
            if device.connect() == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert device.paho.is_connected(), "the new device's account never became valid"
        assert device.publish("kotaflow/rtg-aq-99/telemetry") in ACCEPTED
    finally:
        broker.stop(lambda _line: None)
