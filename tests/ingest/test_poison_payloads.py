"""No single message stalls the bridge (issue 16, case 1), by two defences pinned apart:

- the broker refuses a payload over ``bridge.max_payload_bytes`` at publish time (Mosquitto
  ``message_size_limit``: PUBACK reason code 0x95), so on the stack's broker the huge
  payloads never reach the bridge and every other device's messages flow on;
- the bridge turns whatever a broker lets through that Kafka would refuse (a payload over
  the limit, a record with huge user properties) into a compact dead letter, acks it and
  goes on: pinned on a private broker without the limit.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from bridge_support import (
    BridgeRun,
    Publisher,
    TopicReader,
    free_port,
    ids_of,
    set_topic_config,
    wait_for_log,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deploy.local.mosquitto import built_binary
from ingest.sizes import SizeLimits
from kotaflow.settings import BridgeSettings, MqttSettings, Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason

pytestmark = [pytest.mark.services]

BIG = (2_000_000, 8_000_000)
PACKET_TOO_LARGE = 0x95
"""Mosquitto's PUBACK reason code for a publish over ``message_size_limit``."""


@dataclass
class Poison:
    """What one poisoned device sends, then 100 messages of 10 other devices."""

    device: str
    big: dict[int, bytes]
    wanted: set[str]

    @property
    def topic(self) -> str:
        return f"kotaflow/{self.device}/telemetry"


def _publish_poison_then_others(run: BridgeRun, settings: Settings) -> tuple[Poison, Publisher]:
    poison = Poison(
        run.device(999),
        {size: os.urandom(size) for size in BIG},  # incompressible
        {f"other:{run.rid}:{n}" for n in range(100)},
    )
    # MQTT 5 user properties make a record too big for Kafka although the payload is small
    # (Mosquitto's message_size_limit counts the payload only, so it lets this one through).
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [(f"pad{i}", "p" * 60_000) for i in range(3)]
    publisher = Publisher(settings, f"test-pub-{run.rid}")
    publisher.publish([(poison.topic, payload) for payload in poison.big.values()])
    publisher.publish([(poison.topic, b'{"id":"props"}')], properties=props)
    others = sorted(poison.wanted)
    publisher.publish(
        (f"kotaflow/{run.device(n % 10)}/telemetry", json.dumps({"id": i}).encode())
        for n, i in enumerate(others)
    )
    publisher.finish()
    return poison, publisher


async def _others_then_letters(
    run: BridgeRun, poison: Poison, letters: int
) -> tuple[float, list[tuple[DeadLetter, int]]]:
    """Wait for the other devices' 100 messages (seconds it took) and ``letters`` dead
    letters of the poisoned device, each with its record's size. (The bridge reads every
    device topic of the broker, so other tests' devices show up too: they are left out.)"""
    published_at = time.monotonic()

    def ours() -> list[tuple[DeadLetter, int]]:
        decoded = [(DeadLetter.from_value(v), len(v)) for _, v, _, _ in dead.records]
        return [(d, size) for d, size in decoded if d.device == poison.device]

    async with (
        TopicReader(run.settings, run.raw_topic) as raw,
        TopicReader(run.settings, run.dead_topic) as dead,
    ):
        await raw.until(lambda: poison.wanted <= set(ids_of(raw.records)), timeout_s=10)
        took = time.monotonic() - published_at
        await dead.until(lambda: len(ours()) >= letters, timeout_s=10)
        await dead.poll()  # a moment more: no letter beyond those expected
        return took, ours()


def _assert_refused_record(letters: list[DeadLetter], poison: Poison) -> None:
    """The small payload with huge user properties: dead-lettered compactly by the bridge."""
    (refused,) = [d for d in letters if d.message.startswith("record refused")]
    assert refused.reason is Reason.OVERSIZE
    assert refused.payload == b'{"id":"props"}'


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_the_broker_refuses_huge_payloads_with_a_reason_code_and_others_flow_on(
    bridge_run: BridgeRun,
) -> None:
    """The normal path on the stack's broker (message_size_limit from max_payload_bytes):
    the device gets PUBACK 0x95 for each huge payload, its connection stays usable, and the
    bridge never sees them; the record the producer would refuse is still dead-lettered."""
    run = bridge_run
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    poison, publisher = _publish_poison_then_others(run, run.settings)
    assert publisher.refused == [(poison.topic, size, PACKET_TOO_LARGE) for size in BIG]

    took, found = await _others_then_letters(run, poison, letters=1)
    assert took < 10
    assert len(found) == 1  # the refused payloads never reached the bridge
    _assert_refused_record([d for d, _ in found], poison)
    assert max(size for _, size in found) < 8_192


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_huge_payloads_a_broker_lets_through_are_dead_lettered_compactly(
    bridge_run: BridgeRun, unlimited_broker: int
) -> None:
    """The bridge's own guard, for a broker without the size limit (misconfigured, or
    another make): 2 MB and 8 MB payloads become compact dead letters, are acked, and the
    other devices' messages flow on (issue 16, case 1)."""
    run = bridge_run
    run.spawn_bridge(1, mqtt_port=unlimited_broker)
    wait_for_log(run, 1, "MQTT subscribed")
    private = run.settings.model_copy(
        update={"mqtt": run.settings.mqtt.model_copy(update={"port": unlimited_broker})}
    )
    poison, publisher = _publish_poison_then_others(run, private)
    assert publisher.refused == []  # this broker takes everything

    took, found = await _others_then_letters(run, poison, letters=3)
    assert took < 10
    letters = [d for d, _ in found]
    assert len(letters) == 3
    assert all(d.reason is Reason.OVERSIZE for d in letters)
    by_size = {d.source["payload_bytes"]: d for d in letters}
    for size, payload in poison.big.items():
        letter = by_size[size]
        assert letter.payload == payload[:1024]
        assert letter.source["payload_sha256"] == hashlib.sha256(payload).hexdigest()
        assert letter.source["payload_truncated"] is True
    _assert_refused_record(letters, poison)
    assert max(size for _, size in found) < 8_192


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_bridge_refuses_to_start_when_a_topic_takes_less_than_it_may_send(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    await set_topic_config(run.settings, run.dead_topic, {"max.message.bytes": "50000"})
    bridge = run.spawn_bridge(1)
    assert bridge.wait(timeout=45) == 2
    text = run.log_text(1)
    need = SizeLimits.of(run.settings.bridge).request_bytes
    assert f"{run.dead_topic} max.message.bytes=50000" in text
    assert f"the bridge needs {need}" in text
    assert "MQTT connected" not in text


# -- the broker's half: Mosquitto refuses over-limit publishes with a reason code ---------


@contextmanager
def _private_broker(tmp_path: Path, message_size_limit: int | None) -> Iterator[int]:
    """A private, anonymous Mosquitto (the binary the stack runs, `stack up` builds it), so
    the shared broker's configuration is never touched; yields its port."""
    binary = built_binary(Settings())
    assert binary.is_file(), f"no {binary}: run `kotaflow stack up` first"
    port = free_port()
    conf = tmp_path / f"mosquitto-{port}.conf"
    size = "" if message_size_limit is None else f"message_size_limit {message_size_limit}\n"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_inflight_messages 1000\n{size}log_dest stderr\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "private mosquitto did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def sized_broker(tmp_path: Path) -> Iterator[int]:
    """A private broker with the size line the stack renders from the setting."""
    with _private_broker(tmp_path, SizeLimits.of(BridgeSettings()).payload_bytes) as port:
        yield port


@pytest.fixture
def unlimited_broker(tmp_path: Path) -> Iterator[int]:
    """A private broker without a size limit: what the bridge's own guard is for."""
    with _private_broker(tmp_path, None) as port:
        yield port


def test_the_broker_refuses_a_payload_over_the_limit_with_a_reason_code(
    sized_broker: int,
) -> None:
    limit = SizeLimits.of(BridgeSettings()).payload_bytes
    settings = Settings().model_copy(
        update={"mqtt": MqttSettings(port=sized_broker, username="size-test")}
    )
    publisher = Publisher(settings, "size-test")
    topic = "kotaflow/size-test/telemetry"
    publisher.publish([(topic, b"x" * limit), (topic, b"x" * (limit + 1)), (topic, b"{}")])
    publisher.finish(timeout_s=10)  # every publish answered: a refusal breaks nothing
    assert publisher.refused == [(topic, limit + 1, PACKET_TOO_LARGE)]
