"""The edge's test and benchmark harness: a private central Mosquitto (the stack's own
configuration, accounts and ACL from the registry), a private local Mosquitto for the
devices, the edge as a real process, a reader on the central broker, and Toxiproxy.

Nothing here touches the shared stack's broker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as paho

from deploy.local import stack
from deploy.local.mosquitto import Mosquitto, built_binary
from devices.catalogue import load_catalogue
from devices.credentials import edge_account
from devices.registry import PACKAGED_REGISTRY, load_registry
from edge.queue import EdgeQueue
from kotaflow.mqtt import Account, MqttAccess, mqtt_access
from kotaflow.settings import Settings
from tests.support.polling import wait_until as wait_until  # the edge tests' import

REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kecamatan_devices() -> tuple[str, list[str]]:
    """The sample registry's kecamatan with the most devices on our own topics."""
    registry = load_registry(load_catalogue())
    by_kecamatan: dict[str, list[str]] = {}
    for device in registry:
        if device.enabled and device.dev_eui is None:
            by_kecamatan.setdefault(device.kecamatan, []).append(device.id)
    kecamatan = max(by_kecamatan, key=lambda k: len(by_kecamatan[k]))
    return kecamatan, by_kecamatan[kecamatan]


@contextmanager
def central_broker(tmp_path: Path, registry: Path | None = None) -> Iterator[Settings]:
    """A private Mosquitto as the stack configures it (accounts and ACL from ``registry``,
    default a copy of the packaged one)."""
    if registry is None:
        registry = tmp_path / "registry.yaml"
        registry.write_text(PACKAGED_REGISTRY.read_text())
    settings = Settings(
        stack={"state_dir": tmp_path / "central"},
        mqtt={"port": free_port(), "tls_port": free_port()},
        registry_file=registry,
    )
    statuses = stack.up(settings, lambda _: None, only={"mosquitto"})
    assert all(s.healthy for s in statuses), statuses
    try:
        yield settings
    finally:
        Mosquitto(settings).stop(lambda _: None)


@contextmanager
def local_broker(tmp_path: Path) -> Iterator[int]:
    """The gateway's own Mosquitto (anonymous on loopback, like a fresh Debian install),
    sized to keep the edge's session while it is away; yields its port."""
    built = built_binary(Settings())
    binary = str(built) if built.is_file() else shutil.which("mosquitto", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("no mosquitto binary: `kotaflow stack up` builds one")
    port = free_port()
    conf = tmp_path / "local.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 1000000\nmax_inflight_messages 1000\nlog_dest stderr\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), 10, "the local mosquitto")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class EdgeProcess:
    """``kotaflow edge`` as its own process, pointed at the relay and the local broker."""

    central: Settings
    uplink_port: int
    local_port: int
    workdir: Path
    kecamatan: str
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def queue_file(self) -> Path:
        return self.workdir / "edge-queue.db"

    @property
    def name(self) -> str:
        return edge_account(self.kecamatan).removeprefix("kotaflow-edge-")

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "KOTAFLOW_STACK__STATE_DIR": str(self.workdir / "edge-state"),
            "KOTAFLOW_MQTT__PORT": str(self.uplink_port),
            "KOTAFLOW_MQTT__CREDENTIALS_FILE": str(
                self.central.stack.state_dir / "mosquitto" / "credentials.json"
            ),
            "KOTAFLOW_EDGE__NAME": self.name,
            "KOTAFLOW_EDGE__LOCAL_PORT": str(self.local_port),
            "KOTAFLOW_EDGE__QUEUE_FILE": str(self.queue_file),
            "KOTAFLOW_EDGE__METRICS_PORT": "0",
            "KOTAFLOW_EDGE__RECONNECT_MAX_S": "2",
            "KOTAFLOW_MQTT__KEEPALIVE_S": "5",
            **self.extra_env,
        }
        log = open(self.workdir / f"edge-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kotaflow", "edge"], env=env, stdout=log, stderr=log
        )
        done = self.starts
        wait_until(
            lambda: "subscribed to the device topics" in self._log(done),
            30,
            "the edge to subscribe",
        )

    def _log(self, start: int) -> str:
        path = self.workdir / f"edge-{start}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def queued(self) -> int:
        if not self.queue_file.is_file():
            return -1
        q = EdgeQueue(self.queue_file, 1 << 40)
        try:
            return q.messages
        finally:
            q.close()

    def log_text(self) -> str:
        return "\n".join(self._log(n) for n in range(1, self.starts + 1))


@dataclass
class Collector:
    """Everything the central broker delivers on the device topics (as the bridge reads)."""

    got: list[tuple[str, dict[str, object], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def by_device(self) -> dict[str, list[int]]:
        """Device -> the reading numbers (``n``) that arrived, in arrival order, repeats kept."""
        seen: dict[str, list[int]] = defaultdict(list)
        with self.lock:
            for _topic, payload, _props in self.got:
                seen[str(payload["d"])].append(int(str(payload["n"])))
        return seen

    def distinct(self) -> int:
        """How many different readings arrived (duplicates counted once)."""
        return sum(len(set(v)) for v in self.by_device().values())


@contextmanager
def central_reader(central: Settings) -> Iterator[Collector]:
    access = mqtt_access(central, Account.BRIDGE)
    found = Collector()
    client = access.client(f"edge-test-reader-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        payload = json.loads(msg.payload)
        with found.lock:
            found.got.append((msg.topic, payload, props))

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe([("kotaflow/+/telemetry", 1)])
    client.connect(access.host, access.port)
    client.loop_start()
    assert subscribed.wait(10), "collector did not subscribe"
    try:
        yield found
    finally:
        client.disconnect()
        client.loop_stop()


def local_publisher(port: int) -> paho.Client:
    client = MqttAccess("127.0.0.1", port, 30).client(f"edge-test-dev-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_readings(client: paho.Client, devices: list[str], start: int, count: int) -> None:
    """``count`` readings per device, numbered from ``start``, interleaved across devices."""
    infos = [
        client.publish(f"kotaflow/{d}/telemetry", json.dumps({"n": n, "d": d}), qos=1)
        for n in range(start, start + count)
        for d in devices
    ]
    for info in infos:
        info.wait_for_publish(30)


@dataclass
class Toxiproxy:
    """A Toxiproxy server of our own (API on ``api_port``) with one proxy, ``uplink``."""

    api_port: int
    listen_port: int
    proc: subprocess.Popen[bytes]

    def _api(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=10)

    def toxic(self, name: str, kind: str, stream: str = "downstream", **attributes: int) -> None:
        with self._api() as api:
            body = {"name": name, "type": kind, "stream": stream, "attributes": attributes}
            api.post("/proxies/uplink/toxics", json=body).raise_for_status()

    def remove(self, name: str) -> None:
        with self._api() as api:
            api.delete(f"/proxies/uplink/toxics/{name}").raise_for_status()

    def enabled(self, on: bool) -> None:
        """Off: the listener closes and every connection is cut (a reset-style outage)."""
        with self._api() as api:
            api.post("/proxies/uplink", json={"enabled": on}).raise_for_status()


@contextmanager
def toxiproxy(binary: Path, upstream_port: int) -> Iterator[Toxiproxy]:
    api_port, listen_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(binary), "-host", "127.0.0.1", "-port", str(api_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(api_port), 10, "toxiproxy")
        proxy = Toxiproxy(api_port, listen_port, proc)
        with proxy._api() as api:
            api.post(
                "/proxies",
                json={
                    "name": "uplink",
                    "listen": f"127.0.0.1:{listen_port}",
                    "upstream": f"127.0.0.1:{upstream_port}",
                    "enabled": True,
                },
            ).raise_for_status()
        yield proxy
    finally:
        proc.terminate()
        proc.wait(timeout=10)
