"""Helpers for the bridge's service tests: isolated topics, bridge processes, MQTT traffic,
and reading back what reached Kafka.

Every test gets its own raw, dead-letter and lease topics and MQTT client ids (a run id in
each name), so tests never see each other's data; device ids carry the run id too, because
the bridge subscribes to every device topic on the shared broker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import paho.mqtt.client as paho
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.topics import SUBSCRIPTIONS
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
    mqtt_env: dict[str, str] = field(default_factory=dict)
    """KOTAFLOW_MQTT__* for the bridges when ``settings`` point at another broker."""

    @property
    def raw_topic(self) -> str:
        return f"kotaflow.raw.test-{self.rid}"

    @property
    def dead_topic(self) -> str:
        return f"kotaflow.deadletter.test-{self.rid}"

    @property
    def lease_topic(self) -> str:
        return f"kotaflow.bridge-lease.test-{self.rid}"

    def device(self, n: int) -> str:
        return f"t{self.rid}-d{n:03d}"

    def client_id(self, n: int) -> str:
        cid = f"test-bridge-{self.rid}-{n}"
        if cid not in self.client_ids:
            self.client_ids.append(cid)
        return cid

    def env(self, client_id: str, metrics_port: int = 0, **bridge: str | None) -> dict[str, str]:
        """The bridge's environment; a ``bridge`` value of None leaves that setting at its
        default (the tests otherwise lift the rate limit)."""
        values = {
            **self.mqtt_env,
            "KOTAFLOW_KAFKA__TOPICS__RAW": self.raw_topic,
            "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": self.dead_topic,
            "KOTAFLOW_KAFKA__TOPICS__BRIDGE_LEASE": self.lease_topic,
            "KOTAFLOW_BRIDGE__CLIENT_ID": client_id,
            # Kafka's least (the default is 8 s); set it in the environment to measure another.
            "KOTAFLOW_BRIDGE__LEASE_SESSION_TIMEOUT_MS": os.environ.get(
                "KOTAFLOW_BRIDGE__LEASE_SESSION_TIMEOUT_MS", "6000"
            ),
            "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "600",
            "KOTAFLOW_BRIDGE__METRICS_PORT": str(metrics_port),
            "KOTAFLOW_BRIDGE__RATE_PER_S": "100000",
            "KOTAFLOW_BRIDGE__RATE_BURST": "100000",
            "KOTAFLOW_BRIDGE__RECONNECT_MIN_S": "1",
            "KOTAFLOW_BRIDGE__RECONNECT_MAX_S": "2",
        }
        for key, value in bridge.items():
            if value is None:
                values.pop(f"KOTAFLOW_BRIDGE__{key.upper()}", None)
            else:
                values[f"KOTAFLOW_BRIDGE__{key.upper()}"] = value
        return values

    def spawn_bridge(
        self,
        n: int,
        metrics_port: int = 0,
        session: int | None = None,
        mqtt_port: int | None = None,
        **bridge: str | None,
    ) -> subprocess.Popen[bytes]:
        """``kotaflow bridge`` number ``n`` as a child process, its JSON log in the test's log
        dir; its MQTT session is ``client_id(session)`` (default: its own, ``n``), on the
        stack's broker or the one at ``mqtt_port`` (a test's private broker)."""
        client_id = self.client_id(n if session is None else session)
        env = self.env(client_id, metrics_port, **bridge)
        if mqtt_port is not None:
            env["KOTAFLOW_MQTT__PORT"] = str(mqtt_port)
        log = (self.log_dir / f"test-bridge-{self.rid}-{n}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kotaflow", "bridge"],
            env={**os.environ, **env},
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
    settings: Settings,
    names: Iterable[str],
    configs: dict[str, str] | None = None,
    partitions: int = TEST_PARTITIONS,
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, partitions, 1, topic_configs=configs or {}) for n in names]
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


class _AnswerReadingClient(paho.Client):
    """paho reads a PUBACK's reason code itself, so that every answer counts.

    paho 2.2 accepts only the reason codes MQTT 5 lists for PUBACK. Mosquitto answers a
    publish over ``message_size_limit`` with 0x95 "packet too large", which that list lacks:
    paho calls the PUBACK malformed, drops the connection, reconnects and resends the same
    message, which is refused again, forever (later messages are never acked). Here the raw
    reason byte goes to ``on_answer`` and paho sees a bare PUBACK, which only frees the slot.
    """

    def __init__(self, client_id: str, on_answer: Callable[[paho.MQTTMessage, int], None]) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self._answer_to = on_answer

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = bytes(self._in_packet["packet"])
        if cmd == "PUBACK" and len(packet) >= 2:
            (mid,) = struct.unpack("!H", packet[:2])
            with self._out_message_mutex:
                message = self._out_messages.get(mid)
            if message is not None:
                self._answer_to(message, packet[2] if len(packet) > 2 else 0)
            self._in_packet["packet"] = packet[:2]
        return super()._handle_pubackcomp(cmd)


class Publisher:
    """A QoS 1 MQTT 5 publisher that can pace itself and waits for every PUBACK.

    Every PUBACK is an answer: an accepting one (reason < 0x80) or a refusal, kept in
    :attr:`refused` as (topic, payload bytes, reason code). It logs in as the gateway
    account, which may publish for any device (the tests make up device ids the registry
    does not know)."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        access = mqtt_access(settings, Account.GATEWAY)
        self._client = _AnswerReadingClient(client_id, self._on_answer)
        access.apply(self._client)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._answered = 0
        self.refused: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._all_answered = threading.Event()
        self._expected = -1
        self._client.connect(access.host, access.port, clean_start=True)
        self._client.loop_start()
        self.sent = 0
        self._limit: float = float("inf")
        self._gate = threading.Condition()

    def _on_answer(self, message: paho.MQTTMessage, reason: int) -> None:
        with self._lock:
            self._answered += 1
            if reason >= 0x80:
                self.refused.append((message.topic, len(message.payload), reason))
            if self._answered == self._expected:
                self._all_answered.set()

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
        """Wait until the broker answered every publish (accepted or refused), then leave."""
        with self._lock:
            self._expected = self.sent
            if self._answered >= self.sent:
                self._all_answered.set()
        assert self._all_answered.wait(timeout_s), (
            f"broker answered {self._answered}/{self.sent} (refused: {self.refused})"
        )
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


def first_to_log(run: BridgeRun, ns: Iterable[int], text: str, timeout_s: float = 60.0) -> int:
    """Which of bridges ``ns`` logs ``text`` first (e.g. which one holds the lease)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for n in ns:
            if text in run.log_text(n):
                return n
        if time.monotonic() > deadline:
            raise AssertionError(f"none of bridges {list(ns)} logged {text!r}")
        time.sleep(0.05)


@contextmanager
def resumed_session(
    run: BridgeRun, account: Account | str, client_id: str, filters: Iterable[str] = ()
) -> Iterator[bool]:
    """Connect as ``account`` with ``client_id``, keeping (or making) its persistent session,
    subscribe to ``filters`` at QoS 1 and wait for the answers; yields whether the broker
    resumed a session. Disconnects after, leaving the session behind."""
    access = mqtt_access(run.settings, account)
    client = access.client(client_id)
    present: list[bool] = []
    subscribed: list[bool] = []
    client.on_connect = lambda _c, _u, flags, _rc, _p: present.append(flags.session_present)
    client.on_subscribe = lambda *_: subscribed.append(True)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    client.connect(access.host, access.port, clean_start=False, properties=props)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not present and time.monotonic() < deadline:
            time.sleep(0.02)
        assert present, f"{client_id}: no CONNACK"
        wanted = [(f, SubscribeOptions(qos=1)) for f in filters]
        if wanted:
            client.subscribe(wanted)
            while not subscribed and time.monotonic() < deadline:
                time.sleep(0.02)
            assert subscribed, f"{client_id}: SUBSCRIBE never answered"
        yield present[0]
    finally:
        client.disconnect()
        client.loop_stop()


def abandon_a_session(
    run: BridgeRun, client_id: str, groups: list[str] | None = None, plain: bool = True
) -> None:
    """A bridge that ran once under ``client_id`` and is gone for good: a persistent session
    subscribed the old way ($share under the groups bridges used, and plain)."""
    groups = ["kotaflow-bridge", f"test-{run.rid}"] if groups is None else groups
    filters = [f"$share/{g}/{f}" for g in groups for f in SUBSCRIPTIONS]
    filters += list(SUBSCRIPTIONS) if plain else []
    with resumed_session(run, Account.BRIDGE, client_id, filters):
        pass


async def publish_and_collect(
    run: BridgeRun, devices: int, per_device: int, timeout_s: float = 30.0
) -> Counter[str]:
    """Publish :func:`traffic` and wait until all of it is in the raw topic; returns the ids
    seen there with their counts (duplicates > 1)."""
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    publisher.publish(traffic(run, devices, per_device))
    publisher.finish()
    expected = {f"{run.device(d)}:{s}" for d in range(devices) for s in range(per_device)}
    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s)
        await reader.poll()  # a moment more, for duplicates
    return ids_of(reader.records)
