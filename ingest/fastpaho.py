"""A paho-mqtt 2.x client with a bulk receive path and raw acks, for the bridge only.

Profiling the bridge (py-spy, ``kotaflow bench bridge``) showed paho's network thread, not
Kafka, as the limit: per message paho runs three ``recv`` calls (command byte, length,
body), builds a ``Properties`` table and an ``MQTTMessage`` (a lock each), looks the topic up
in its per-filter callback table, and every ``ack()`` costs a queued packet, a wake-up byte
and a ``send``. This subclass keeps paho's protocol handling (connect, subscribe, keepalive,
reconnect, TLS) and changes only how bytes move:

- :meth:`FastClient.loop_read` reads up to ``RECV_BYTES`` per ``recv`` and splits the
  buffer into MQTT packets itself. MQTT 5 QoS 0/1 PUBLISH packets without properties (what
  devices send) become one :data:`Arrival` tuple each, and every ``recv``'s worth is handed
  to ``on_arrivals`` as one list: one hand-off per few hundred messages, not one per message.
  Every other packet (CONNACK, SUBACK, PINGRESP, PUBLISH with properties or QoS 2, ...) is
  given to paho's own handler exactly as paho would have read it.
- :meth:`FastClient.ack_raw` queues a run of ready-made PUBACK packets as one write.
- At low rates (under ``GATHER_BYTES`` per ``linger_s``) a read that woke the thread waits
  ``linger_s`` and takes what came meanwhile with it. On this VM every wake-up of a thread
  costs tens of µs of CPU and every Kafka round trip ~0.5 ms (measured,
  ``benchmarks/bridge_steady.py``), so a message handed over alone paid for a wake-up of
  the asyncio side, a produce request and an ack write by itself: ~0.5 ms CPU at 100
  messages/s. Gathered, a window of messages shares them. Under load nothing waits.

The overrides touch paho internals (``_in_packet``, ``_packet_handle``, ``_loop_rc_handle``,
``_packet_queue``), hence the ``<3`` pin; unit tests feed it real packet bytes and the
service tests run it against the broker, over TCP and TLS.
"""

from __future__ import annotations

import logging
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket

log = logging.getLogger("kotaflow.bridge.mqtt")

RECV_BYTES = 262_144
MAX_RECVS = 4
"""``recv`` calls per ``loop_read``: then paho's loop gets to write (our acks) again."""

GATHER_BYTES = RECV_BYTES // 4
"""With a linger: fewer bytes than this per linger period is low-rate traffic, gathered."""

_PUBLISH = 0x30
_PUBLISH_QOS1 = 0x32
_PUBACK = 0x40
_U16 = struct.Struct("!H")

Arrival = tuple[int, int, bool, bool, bytes, bytes, Any]
"""(mid, qos, dup, retain, topic as sent, payload, paho ``Properties`` or None)."""

OnArrivals = Callable[[list[Arrival], float], None]
"""Called on the network thread with one ``recv``'s messages and its monotonic time."""


def _in_packet(command: int = 0, body: bytes = b"") -> Any:
    """paho's record of the packet being read, as ``_packet_read`` leaves it when whole."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }


class FastClient(paho.Client):
    """paho's client with a bulk PUBLISH path and raw acks.

    Set ``on_arrivals`` before connecting; ``on_message`` receives only what the bulk path
    leaves to paho (PUBLISH packets with MQTT 5 properties, QoS 2).
    """

    on_arrivals: OnArrivals | None = None
    linger_s: float = 0.0
    """At low rates, a read that wakes the thread waits this long and reads what came
    meanwhile, so one window's messages are handed over as one burst."""
    _rx: bytes = b""
    _busy = False
    _period_start = 0.0
    _period_bytes = 0

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._protocol != MQTTProtocolVersion.MQTTv5 or self.on_arrivals is None:
            return super().loop_read(max_packets)
        for attempt in range(MAX_RECVS):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            try:
                data = self._sock_recv(RECV_BYTES)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except OSError as err:
                log.warning("MQTT receive failed", extra={"error": repr(err)})
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            if not data:
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            if self.linger_s > 0:
                self._count(len(data))
                if not attempt and not self._busy and len(data) < GATHER_BYTES:
                    data = self._gather(data)
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()
            rc = self._split(self._rx + data if self._rx else data)
            if rc:
                return self._loop_rc_handle(rc)
            sock = self._sock
            if len(data) < RECV_BYTES and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break  # the kernel had no more for now: let paho's loop select again
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _count(self, size: int) -> None:
        """Measure the rate per linger period: at ``GATHER_BYTES`` or more per period the
        traffic is heavy enough to make full batches without waiting (a drain)."""
        self._period_bytes += size
        now = time.monotonic()
        if now - self._period_start >= self.linger_s:
            self._busy = self._period_bytes >= GATHER_BYTES
            self._period_start, self._period_bytes = now, 0

    def _gather(self, data: bytes) -> bytes:
        """``data`` and whatever arrives within ``linger_s`` (up to ``RECV_BYTES``); a
        closed or failed socket is left for the next read to find."""
        time.sleep(self.linger_s)
        parts = [data]
        size = len(data)
        while size < RECV_BYTES and self._sock is not None:
            try:
                more = self._sock_recv(RECV_BYTES - size)
            except (BlockingIOError, OSError):
                break
            if not more:
                break
            self._count(len(more))
            parts.append(more)
            size += len(more)
        return b"".join(parts) if len(parts) > 1 else data

    def _split(self, buf: bytes) -> MQTTErrorCode:
        """Handle every complete packet in ``buf``; keep the incomplete tail for later."""
        on_arrivals = self.on_arrivals
        assert on_arrivals is not None
        arrivals: list[Arrival] = []
        now = time.monotonic()
        unpack = _U16.unpack_from
        end = len(buf)
        pos = 0
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while pos + 2 <= end:
            header = buf[pos]
            i = pos + 1
            length = shift = 0
            complete = False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    break  # more than 4 length bytes
            if shift > 21:
                rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                break
            if not complete:
                break  # the length itself is not complete yet
            packet_end = i + length
            if packet_end > end:
                break  # body not complete yet
            kind = header & 0xF6  # packet type and QoS bits (not DUP, not RETAIN)
            if kind in (_PUBLISH, _PUBLISH_QOS1) and length >= 4:
                # topic, packet id (QoS 1 only), properties length, payload
                topic_end = i + 2 + unpack(buf, i)[0]
                qos = (header >> 1) & 0x03
                props_at = topic_end + 2 if qos else topic_end
                if props_at < packet_end and buf[props_at] == 0 and topic_end > i + 2:
                    arrivals.append(
                        (
                            unpack(buf, topic_end)[0] if qos else 0,
                            qos,
                            bool(header & 0x08),
                            bool(header & 0x01),
                            buf[i + 2 : topic_end],
                            buf[props_at + 1 : packet_end],
                            None,
                        )
                    )
                    pos = packet_end
                    continue
            if arrivals:  # keep arrival order across the hand-over to paho
                on_arrivals(arrivals, now)
                arrivals = []
            rc = self._handle_with_paho(header, buf[i:packet_end])
            pos = packet_end
            if rc:
                break
        self._rx = buf[pos:] if pos < end else b""
        if arrivals:
            on_arrivals(arrivals, now)
        return rc

    def _create_socket(self) -> Any:
        self._rx = b""  # a new connection starts a new byte stream
        return super()._create_socket()

    def _handle_with_paho(self, header: int, body: bytes) -> MQTTErrorCode:
        """What paho's ``_packet_read`` does once a whole packet is in."""
        self._in_packet = _in_packet(header, body)
        try:
            rc: MQTTErrorCode = self._packet_handle()
        except MalformedPacket as exc:
            log.warning("malformed MQTT packet", extra={"error": str(exc)})
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            self._in_packet = _in_packet()
        return rc

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None:
            return
        try:
            on_message(self, self._userdata, message)
        except Exception:
            log.exception("on_message failed")  # never let it kill the network thread

    def ack_raw(self, packets: bytes) -> None:
        """Queue ready-made PUBACK packets (:mod:`ingest.acks` builds them) as one write."""
        if packets:
            self._packet_queue(_PUBACK, packets, 0, 0)
