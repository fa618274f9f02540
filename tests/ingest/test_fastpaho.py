"""The bridge's paho fast path: bulk PUBLISH splitting and raw PUBACKs (no broker needed).

The packets are the bytes a broker sends; a socket pair stands in for its connection.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ingest.fastpaho import GATHER_BYTES, Arrival, FastClient


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 1,
    dup: bool = False,
    retain: bool = False,
    properties: bytes = b"",
) -> bytes:
    """An MQTT 5 PUBLISH packet."""
    body = len(topic).to_bytes(2, "big") + topic.encode()
    if qos:
        body += mid.to_bytes(2, "big")
    body += _length(len(properties)) + properties + payload
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return bytes([header]) + _length(len(body)) + body


class Harness:
    def __init__(self, client: FastClient, peer: socket.socket) -> None:
        self.client = client
        self.peer = peer
        self.seen: list[tuple[str, object]] = []
        client.on_arrivals = lambda arrivals, _at: self.seen.append(("bulk", arrivals))
        client.on_message = lambda _c, _u, msg: self.seen.append(("paho", msg))

    def feed(self, data: bytes) -> MQTTErrorCode:
        self.peer.sendall(data)
        return self.client.loop_read()

    def arrivals(self) -> list[Arrival]:
        return [a for kind, batch in self.seen if kind == "bulk" for a in batch]  # type: ignore[attr-defined]


@pytest.fixture
def harness() -> Iterator[Harness]:
    client = FastClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    try:
        yield Harness(client, peer)
    finally:
        ours.close()
        peer.close()


def test_a_burst_of_publishes_is_handed_over_as_one_list(harness: Harness) -> None:
    data = (
        publish("kotaflow/a/telemetry", b'{"t":1}', mid=1)
        + publish("kotaflow/b/telemetry", b"", qos=0, retain=True)
        + publish("kotaflow/c/telemetry", b"x" * 300, mid=65535, dup=True)
    )
    assert harness.feed(data) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [kind for kind, _ in harness.seen] == ["bulk"]
    assert harness.arrivals() == [
        (1, 1, False, False, b"kotaflow/a/telemetry", b'{"t":1}', None),
        (0, 0, False, True, b"kotaflow/b/telemetry", b"", None),
        (65535, 1, True, False, b"kotaflow/c/telemetry", b"x" * 300, None),
    ]


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 40, 151, 152, 153])
def test_a_packet_cut_anywhere_is_completed_by_the_next_read(harness: Harness, cut: int) -> None:
    first = publish("kotaflow/a/telemetry", b"p" * 100, mid=7)  # 2-byte remaining length
    second = publish("kotaflow/b/telemetry", b"q" * 200, mid=8)
    data = first + second
    harness.feed(data[:cut])
    harness.feed(data[cut:])
    got = harness.arrivals()
    assert [(a[0], a[4], a[5]) for a in got] == [
        (7, b"kotaflow/a/telemetry", b"p" * 100),
        (8, b"kotaflow/b/telemetry", b"q" * 200),
    ]


def test_publish_with_properties_takes_pahos_path_in_arrival_order(harness: Harness) -> None:
    content_type = b"\x03" + len(b"application/json").to_bytes(2, "big") + b"application/json"
    harness.feed(
        publish("kotaflow/a/telemetry", b"1", mid=1)
        + publish("kotaflow/a/telemetry", b"2", mid=2, properties=content_type)
        + publish("kotaflow/a/telemetry", b"3", mid=3)
    )
    kinds = [kind for kind, _ in harness.seen]
    assert kinds == ["bulk", "paho", "bulk"]
    msg = harness.seen[1][1]
    assert isinstance(msg, paho.MQTTMessage)
    assert (msg.mid, msg.payload, msg.properties.ContentType) == (2, b"2", "application/json")  # type: ignore[union-attr]


def test_a_length_over_four_bytes_is_a_protocol_error(harness: Harness) -> None:
    assert harness.feed(b"\x30\xff\xff\xff\xff\x01") == MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert harness.client._sock is None  # paho closed the connection


def test_the_broker_closing_the_connection_is_reported(harness: Harness) -> None:
    harness.peer.shutdown(socket.SHUT_WR)
    assert harness.client.loop_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST


def test_ack_raw_queues_one_write() -> None:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
    client.ack_raw(b"\x40\x02\x00\x01\x40\x02\x01\x02")
    (queued,) = list(client._out_packet)
    assert bytes(queued["packet"]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"
    client.ack_raw(b"")
    assert len(client._out_packet) == 1


def _send_later(peer: socket.socket, data: bytes, delay_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), peer.sendall(data)))
    thread.start()
    return thread


def test_with_a_linger_low_rate_messages_of_one_window_are_one_burst(harness: Harness) -> None:
    harness.client.linger_s = 0.2
    later = _send_later(harness.peer, publish("kotaflow/b/telemetry", b"2", mid=2), 0.05)
    assert (
        harness.feed(publish("kotaflow/a/telemetry", b"1", mid=1)) == MQTTErrorCode.MQTT_ERR_SUCCESS
    )
    later.join()
    assert [kind for kind, _ in harness.seen] == ["bulk"]  # one hand-over, not two
    assert [a[5] for a in harness.arrivals()] == [b"1", b"2"]


def test_heavy_traffic_is_handed_over_without_waiting(harness: Harness) -> None:
    harness.client.linger_s = 0.05
    burst = b"".join(publish("kotaflow/a/telemetry", b"x" * 200, mid=i + 1) for i in range(400))
    assert len(burst) > GATHER_BYTES
    harness.feed(burst)  # a drain: GATHER_BYTES or more within one linger period
    began = time.monotonic()
    harness.feed(publish("kotaflow/a/telemetry", b"small", mid=2))
    assert time.monotonic() - began < 0.04  # no linger while busy
    assert harness.arrivals()[-1][5] == b"small"


def test_a_connection_closed_while_gathering_is_found_by_the_next_read(harness: Harness) -> None:
    harness.client.linger_s = 0.05
    harness.peer.sendall(publish("kotaflow/a/telemetry", b"1", mid=1))
    harness.peer.shutdown(socket.SHUT_WR)
    assert harness.client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [a[5] for a in harness.arrivals()] == [b"1"]
    assert harness.client.loop_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST
