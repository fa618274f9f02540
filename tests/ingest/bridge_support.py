"""Helpers for the bridge's service tests: isolated topics, bridge processes, MQTT traffic,
and reading back what reached Kafka.

Every test gets its own raw and dead-letter topics, share group and client ids (a run id in
each name), so tests never see each other's data; device ids carry the run id too, because
the bridge subscribes to every device topic on the shared broker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from paho.mqtt.properties import Properties

from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings

TEST_PARTITIONS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class BridgeRun:
    """One test's namespace on the shared stack."""

    settings: Settings
    log_dir: Path
    rid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    client_ids: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def raw_topic(self) -> str:
        return f"kotaflow.raw.test-{self.rid}"

    @property
    def dead_topic(self) -> str:
        return f"kotaflow.deadletter.test-{self.rid}"

    @property
    def share_group(self) -> str:
        return f"test-{self.rid}"

    def device(self, n: int) -> str:
        return f"t{self.rid}-d{n:03d}"

    def client_id(self, n: int) -> str:
        cid = f"test-bridge-{self.rid}-{n}"
        if cid not in self.client_ids:
            self.client_ids.append(cid)
        return cid

    def env(self, client_id: str, metrics_port: int = 0, **bridge: str) -> dict[str, str]:
        values = {
            "KOTAFLOW_KAFKA__TOPICS__RAW": self.raw_topic,
            "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": self.dead_topic,
            "KOTAFLOW_BRIDGE__CLIENT_ID": client_id,
            "KOTAFLOW_BRIDGE__SHARE_GROUP": self.share_group,
            "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "600",
            "KOTAFLOW_BRIDGE__METRICS_PORT": str(metrics_port),
            "KOTAFLOW_BRIDGE__RATE_PER_S": "100000",
            "KOTAFLOW_BRIDGE__RATE_BURST": "100000",
            "KOTAFLOW_BRIDGE__RECONNECT_MIN_S": "1",
            "KOTAFLOW_BRIDGE__RECONNECT_MAX_S": "2",
        }
        values.update({f"KOTAFLOW_BRIDGE__{k.upper()}": v for k, v in bridge.items()})
        return values

    def spawn_bridge(self, n: int, metrics_port: int = 0, **bridge: str) -> subprocess.Popen[bytes]:
        """``kotaflow bridge`` as a child process, its JSON log in the test's log dir."""
        client_id = self.client_id(n)
        log = (self.log_dir / f"{client_id}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kotaflow", "bridge"],
            env={**os.environ, **self.env(client_id, metrics_port, **bridge)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.processes.append(proc)
        return proc

    def log_text(self, n: int) -> str:
        path = self.log_dir / f"test-bridge-{self.rid}-{n}.log"
        return path.read_text(errors="replace", encoding="utf-8") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- Kafka -------------------------------------------------------------------------------


async def create_topics(
    settings: Settings, names: Iterable[str], configs: dict[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, TEST_PARTITIONS, 1, topic_configs=configs or {}) for n in names]
        )
    finally:
        await admin.close()


async def set_topic_config(settings: Settings, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
    finally:
        await admin.close()


Record = tuple[bytes | None, bytes, list[tuple[str, bytes]], int]
"""(key, value, headers, partition) of one consumed record."""


class TopicReader:
    """Reads a whole topic from the beginning, keeping what the test asks for."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._topic = topic
        self.records: list[Record] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        partitions = [TopicPartition(self._topic, p) for p in range(TEST_PARTITIONS)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> int:
        """Fetch what is there now; returns how many records came in."""
        batches = await self._consumer.getmany(timeout_ms=200, max_records=20_000)
        n = 0
        for tp, records in batches.items():
            for r in records:
                self.records.append((r.key, r.value or b"", list(r.headers), tp.partition))
                n += 1
        return n

    async def until(
        self, done: Callable[[], bool], timeout_s: float, between: Callable[[], None] = lambda: None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self._topic}: condition not met in {timeout_s:.0f}s")
            await self.poll()
            between()


def ids_of(
    records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]], int]],
) -> Counter[str]:
    """Count the unique payload ids among ``records`` (duplicates show as counts > 1)."""
    found: Counter[str] = Counter()
    for _, value, _, _ in records:
        try:
            found[json.loads(value)["id"]] += 1
        except (ValueError, KeyError, TypeError):
            continue
    return found


# -- MQTT --------------------------------------------------------------------------------


def traffic(run: BridgeRun, devices: int, per_device: int) -> Iterator[tuple[str, bytes]]:
    """Round-robin over ``devices`` simulated devices, each message with a unique id."""
    for seq in range(per_device):
        for d in range(devices):
            dev = run.device(d)
            payload = {"id": f"{dev}:{seq}", "t": 21.5 + d / 10, "rh": 80, "seq": seq}
            yield f"kotaflow/{dev}/telemetry", json.dumps(payload).encode()


class Publisher:
    """A QoS 1 MQTT 5 publisher that can pace itself and waits for every PUBACK.

    It logs in as the gateway account, which may publish for any device (the tests make up
    device ids the registry does not know)."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        access = mqtt_access(settings, Account.GATEWAY)
        self._client = access.client(client_id)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._acked = 0
        self._lock = threading.Lock()
        self._all_acked = threading.Event()
        self._expected = -1
        self._client.on_publish = self._on_publish
        self._client.connect(access.host, access.port, clean_start=True)
        self._client.loop_start()
        self.sent = 0
        self._limit: float = float("inf")
        self._gate = threading.Condition()

    def _on_publish(
        self, client: object, userdata: object, mid: int, rc: object, props: object
    ) -> None:
        with self._lock:
            self._acked += 1
            if self._acked == self._expected:
                self._all_acked.set()

    def publish(
        self,
        messages: Iterable[tuple[str, bytes]],
        rate_per_s: float | None = None,
        properties: Properties | None = None,
    ) -> None:
        started = time.monotonic()
        for topic, payload in messages:
            with self._gate:
                self._gate.wait_for(lambda: self.sent < self._limit)
            self._client.publish(topic, payload, qos=1, properties=properties)
            self.sent += 1
            if rate_per_s is not None and self.sent % 100 == 0:
                ahead = self.sent / rate_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the load, not waiting for a result

    def hold_at(self, count: float) -> None:
        """Publish at most ``count`` messages until told otherwise (inf: no limit)."""
        with self._gate:
            self._limit = count
            self._gate.notify_all()

    def finish(self, timeout_s: float = 120.0) -> None:
        with self._lock:
            self._expected = self.sent
            if self._acked >= self.sent:
                self._all_acked.set()
        assert self._all_acked.wait(timeout_s), f"broker acked {self._acked}/{self.sent}"
        self._client.disconnect()
        self._client.loop_stop()

    def publish_in_background(
        self, messages: Iterable[tuple[str, bytes]], rate_per_s: float | None = None
    ) -> threading.Thread:
        thread = threading.Thread(target=self.publish, args=(messages, rate_per_s), daemon=True)
        thread.start()
        return thread


def scrape(port: int) -> dict[str, float]:
    """The bridge's Prometheus metrics as name{labels} -> value."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_for_log(run: BridgeRun, n: int, text: str, timeout_s: float = 60.0) -> None:
    """Poll bridge ``n``'s log until ``text`` shows up (e.g. its subscription is in place)."""
    deadline = time.monotonic() + timeout_s
    while text not in run.log_text(n):
        if time.monotonic() > deadline:
            raise AssertionError(f"bridge {n} never logged {text!r}:\n{run.log_text(n)[-3000:]}")
        time.sleep(0.1)
