"""``devices add`` against a running local broker: the new device can publish at once.

A private Mosquitto of the local stack (own state directory and ports), so the shared
broker's accounts are never touched.
"""

from __future__ import annotations

import json
import queue
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from deploy.local import stack
from deploy.local.mosquitto import Mosquitto
from devices.registry import PACKAGED_REGISTRY
from kotaflow.mqtt import MqttAccess, MqttLogin
from kotaflow.settings import Settings

pytestmark = pytest.mark.services

ACCEPTED = {0, 16}
"""PUBACK success, and success with "no matching subscribers"."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    registry = tmp_path / "registry.yaml"
    registry.write_text(PACKAGED_REGISTRY.read_text(encoding="utf-8"), encoding="utf-8")
    port, tls_port = free_port(), free_port()
    env = {
        "KOTAFLOW_STACK__STATE_DIR": str(tmp_path / "state"),
        "KOTAFLOW_MQTT__PORT": str(port),
        "KOTAFLOW_MQTT__TLS_PORT": str(tls_port),
        "KOTAFLOW_REGISTRY_FILE": str(registry),
    }
    settings = Settings(
        stack={"state_dir": tmp_path / "state"},
        mqtt={"port": port, "tls_port": tls_port},
        registry_file=registry,
    )
    statuses = stack.up(settings, lambda _: None, only={"mosquitto"})
    assert all(s.healthy for s in statuses), statuses
    try:
        yield settings, env
    finally:
        Mosquitto(settings).stop(lambda _: None)


def publish_as(settings: Settings, user: str, password: str, topic: str) -> int:
    """The PUBACK reason code of one QoS 1 message published as ``user``."""
    login = MqttLogin(user, SecretStr(password))
    access = MqttAccess(settings.mqtt.host, settings.mqtt.port, 10, login=login)
    client = access.client(f"test-onboard-{user}")
    acks: queue.Queue[int] = queue.Queue()

    def on_publish(*args: Any) -> None:
        acks.put(int(args[3].value))

    client.on_publish = on_publish
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:
        client.publish(topic, b'{"temperature": 21}', qos=1).wait_for_publish(10)
        return acks.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_added_device_publishes_at_once(private_broker: tuple[Settings, dict[str, str]]) -> None:
    settings, env = private_broker
    from kotaflow.cli import app

    result = CliRunner().invoke(
        app,
        ["devices", "add", "rtg-wx-66", "--type", "weather", "--name", "Uji",
         "--kecamatan", "Ruteng", "--latitude", "-8.6", "--longitude", "120.4",
         "--elevation-m", "1100", "--json"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    connection = json.loads(result.stdout)
    assert connection["port"] == settings.mqtt.port
    assert connection["tls_ca_file"]
    code = publish_as(
        settings, "rtg-wx-66", connection["password"], connection["topics"]["native_json"]
    )
    assert code in ACCEPTED
