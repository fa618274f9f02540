"""No single message stalls the bridge: a payload too big for anything becomes a compact dead
letter, is acked, and every other device's messages keep flowing (issue 16, case 1)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
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
from kotaflow.settings import BridgeSettings, Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason

pytestmark = [pytest.mark.services]

BIG = (2_000_000, 8_000_000)


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_huge_payloads_are_dead_lettered_compactly_and_others_flow_on(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    poison = run.device(999)
    big = {size: os.urandom(size) for size in BIG}  # incompressible
    # MQTT 5 user properties make a record too big for Kafka although the payload is small.
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [(f"pad{i}", "p" * 60_000) for i in range(3)]
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    publisher.publish([(f"kotaflow/{poison}/telemetry", payload) for payload in big.values()])
    publisher.publish([(f"kotaflow/{poison}/telemetry", b'{"id":"props"}')], properties=props)
    others = [
        (f"kotaflow/{run.device(n % 10)}/telemetry", json.dumps({"id": f"other:{n}"}).encode())
        for n in range(100)
    ]
    publisher.publish(others)
    publisher.finish()
    published_at = time.monotonic()

    wanted = {f"other:{n}" for n in range(100)}
    async with (
        TopicReader(run.settings, run.raw_topic) as raw,
        TopicReader(run.settings, run.dead_topic) as dead,
    ):
        await raw.until(lambda: wanted <= set(ids_of(raw.records)), timeout_s=10)
        took = time.monotonic() - published_at
        await dead.until(lambda: len(dead.records) >= 3, timeout_s=10)

    letters = [DeadLetter.from_value(value) for _, value, _, _ in dead.records]
    assert all(d.device == poison and d.reason is Reason.OVERSIZE for d in letters)
    by_size = {d.source["payload_bytes"]: d for d in letters}
    for size, payload in big.items():
        letter = by_size[size]
        assert letter.payload == payload[:1024]
        assert letter.source["payload_sha256"] == hashlib.sha256(payload).hexdigest()
        assert letter.source["payload_truncated"] is True
    (refused,) = [d for d in letters if d.message.startswith("record refused")]
    assert refused.payload == b'{"id":"props"}'
    assert max(len(value) for _, value, _, _ in dead.records) < 8_192
    assert wanted <= set(ids_of(raw.records))
    assert took < 10


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


@pytest.fixture
def sized_broker(tmp_path: Path) -> Iterator[int]:
    """A private Mosquitto with the size line the stack renders from the setting, so the
    shared broker's configuration is never touched; yields its port."""
    binary = built_binary(Settings())  # the broker the stack runs (`stack up` builds it)
    assert binary.is_file(), f"no {binary}: run `kotaflow stack up` first"
    limit = SizeLimits.of(BridgeSettings()).payload_bytes
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"message_size_limit {limit}\nlog_dest stderr\n",
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


def _packet(kind: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind]) + bytes(encoded) + body


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    head = sock.recv(1)[0]
    length, shift = 0, 0
    while True:
        byte = sock.recv(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return head, body


def _puback_reason(sock: socket.socket, mid: int, payload: bytes) -> int:
    """Publish at QoS 1 over raw MQTT 5 (paho cannot parse every reason code Mosquitto sends
    in a PUBACK) and return the PUBACK's reason code."""
    topic = b"kotaflow/size-test/telemetry"
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + b"\x00" + payload
    sock.sendall(_packet(0x32, body))
    head, ack = _read_packet(sock)
    assert head & 0xF0 == 0x40
    assert struct.unpack("!H", ack[:2])[0] == mid
    return ack[2] if len(ack) > 2 else 0


def test_the_broker_refuses_a_payload_over_the_limit_with_a_reason_code(
    sized_broker: int,
) -> None:
    limit = SizeLimits.of(BridgeSettings()).payload_bytes
    with socket.create_connection(("127.0.0.1", sized_broker), timeout=10) as sock:
        client_id = b"size-test"
        connect = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + struct.pack("!H", len(client_id))
        sock.sendall(_packet(0x10, connect + client_id))
        head, connack = _read_packet(sock)
        assert head == 0x20
        assert connack[1] == 0
        assert _puback_reason(sock, 1, b"x" * limit) < 0x80  # at the limit: accepted
        refused = _puback_reason(sock, 2, b"x" * (limit + 1))
    assert refused >= 0x80, f"reason code {refused:#x}"  # 2.0.11: 0x95 packet too large
