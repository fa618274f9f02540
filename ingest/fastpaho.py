"""A paho-mqtt 2.x client with a faster receive and ack path, for the bridge only.

Profiling the bridge (py-spy, benchmarks/bridge_bench.py) showed paho's network thread as
the bottleneck, not Kafka: per message it runs one ``select`` and three ``recv`` calls
(command byte, length, body), looks the topic up in an (empty) per-filter callback table,
and every ``ack()`` costs two syscalls (queue + wake-up byte) and one ``send``. This
subclass keeps paho's protocol handling and changes only how bytes move:

- the TCP socket is wrapped in :class:`BufferedSocket`: one ``recv`` of up to 256 KiB feeds
  many small reads, and its ``pending()`` tells paho's loop (as for TLS sockets) that more
  is buffered, so no data sits unseen behind a ``select``;
- ``loop_read`` handles up to ``READ_BATCH`` packets per wake-up instead of one;
- MQTT 5 QoS 0/1 PUBLISH packets without properties (what devices send) are decoded here
  into an :class:`~ingest.edge.Inbound` and handed to ``on_arrival``, skipping paho's
  per-message ``Properties`` table (the largest single cost), ``MQTTMessage`` (a lock per
  message) and the per-filter callback lookup; anything else takes paho's own path;
- :meth:`FastClient.ack_many` queues a run of PUBACKs as one write.

The overrides touch paho internals (``_packet_read``, ``_loop_rc_handle``, ``_packet_queue``,
``_create_socket``), hence the ``<3`` pin; the service tests exercise every one of them.
TLS and websocket transports keep paho's own socket (they buffer already).
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

from ingest.edge import Inbound

log = logging.getLogger("kotaflow.bridge.mqtt")

READ_BATCH = 256
RECV_BYTES = 262_144
_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")
_U16 = struct.Struct("!H")

OnArrival = Callable[[int, int, bool, float, Inbound], None]
"""(mid, qos, dup, receive time (monotonic), message) for each decoded PUBLISH."""


class BufferedSocket:
    """A non-blocking TCP socket whose small reads are served from one large ``recv``."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(RECV_BYTES)  # BlockingIOError when nothing is there
            if not data:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._buf))
        return self._buf[start : self._pos]

    def pending(self) -> int:
        """Bytes already read from the kernel but not yet handed out (paho checks this)."""
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class FastClient(paho.Client):
    """paho's client with buffered reads, a lean PUBLISH path and batched acks.

    Set ``on_arrival``; ``on_message`` still receives what the lean path leaves to paho.
    """

    on_arrival: OnArrival | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        on_arrival = self.on_arrival
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if on_arrival is None or qos == 2 or self._protocol != MQTTProtocolVersion.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            (topic_len,) = _U16.unpack_from(packet, 0)
            pos = 2 + topic_len
            topic_bytes = bytes(packet[2:pos])
            mid = 0
            if qos:
                (mid,) = _U16.unpack_from(packet, pos)
                pos += 2
            has_properties = packet[pos] != 0
        except (struct.error, IndexError):
            return super()._handle_publish()  # let paho report the malformed packet
        if has_properties or not topic_bytes:
            return super()._handle_publish()
        try:
            topic = topic_bytes.decode()
        except UnicodeDecodeError:
            topic = topic_bytes.decode("utf-8", "backslashreplace")
        inbound = Inbound(topic, bytes(packet[pos + 1 :]), qos, bool(header & 0x01))
        try:
            on_arrival(mid, qos, bool(header & 0x08), time.monotonic(), inbound)
        except Exception:
            log.exception("on_arrival failed")  # never let it kill the network thread
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl:
            return BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        for _ in range(READ_BATCH):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                handled: MQTTErrorCode = self._loop_rc_handle(rc)
                return handled
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            return
        try:
            on_message(self, self._userdata, message)
        except Exception:
            log.exception("on_message failed")  # never let it kill the network thread

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK each mid (QoS 1), in order, as one queued write and one wake-up."""
        pack = _PUBACK_PACKET.pack
        packet = b"".join(pack(_PUBACK, 2, mid) for mid in mids)
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)
