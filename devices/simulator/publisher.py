"""Publish QoS 1 messages over one MQTT 5 connection, driven by the asyncio event loop.

paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``) runs here without its network thread: its
socket is registered with the running loop (``add_reader``/``add_writer``, paho's
"external event loop" callbacks) and ``loop_misc`` is called every second for keepalive.
Everything - publishing, PUBACK accounting, the simulator's pacing - then runs on one
thread, with no lock and no GIL hand-off per message.

Flow control is ours: at most :attr:`MqttPublisher.capacity` messages are published and
not yet acknowledged (the smaller of the option and the broker's MQTT 5 Receive Maximum);
paho's own in-flight limit is switched off because it rescans every queued message on each
PUBACK. A PUBACK with a failure reason code (0x87 Not authorized: the broker's ACL refused
the topic) counts as *refused*; losing the connection fails the run (:class:`PublishError`)
- the simulator reports, it does not retry. Several publishers (one per broker account, see
``devices/simulator/pool.py``) count into one shared :class:`PublishTally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kotaflow.mqtt import MqttAccess

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class PublishError(RuntimeError):
    """The broker refused the connection or the connection was lost."""


class PackedProperties:
    """MQTT 5 PUBLISH properties encoded once, here: paho only ever calls ``pack()`` on them.

    Building and packing a paho ``Properties`` costs tens of microseconds per message (it
    rescans its table of names on every attribute set), the largest cost of a simulated
    message. User properties are a simple wire format (MQTT 5.0, 3.3.2.3.7): identifier
    0x26, then two length-prefixed UTF-8 strings, the lot prefixed by its variable-byte
    length. The service test checks a subscriber receives them.
    """

    __slots__ = ("_packed",)

    def __init__(self, user_properties: Sequence[tuple[str, str]]) -> None:
        body = bytearray()
        for name, value in user_properties:
            body.append(0x26)
            for text in (name.encode(), value.encode()):
                body += len(text).to_bytes(2, "big") + text
        self._packed = bytes(_variable_byte_integer(len(body)) + body)

    def pack(self) -> bytes:
        return self._packed


def _variable_byte_integer(value: int) -> bytearray:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return out


@dataclass(eq=False)
class PublishTally:
    """What the connections of one run add up to; the pacer waits on ``progress``."""

    inflight: int = 0
    acked: int = 0
    refused: int = 0
    last_ack_at: float = 0.0
    error: PublishError | None = None
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_progress(self) -> None:
        """Until a PUBACK arrives or a connection is lost (then raise its error)."""
        if self.error is not None:
            raise self.error
        self.progress.clear()
        await self.progress.wait()
        if self.error is not None:
            raise self.error


class MqttPublisher:
    def __init__(
        self,
        access: MqttAccess,
        client_id: str,
        max_inflight: int,
        tally: PublishTally | None = None,
    ) -> None:
        self._access = access
        self._max_inflight = max_inflight
        self.capacity = max_inflight
        self.tally = tally or PublishTally()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._misc: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._client = self._make_client(client_id)

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = self._access.client(client_id)
        client.max_inflight_messages_set(0)  # unlimited here; bounded by self.capacity
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    # --- lifecycle -----------------------------------------------------------------

    async def connect(self, wait_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and wait for the CONNACK (at most ``wait_s``)."""
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        self._client.connect_timeout = wait_s
        try:
            self._client.connect(
                self._access.host, self._access.port, keepalive=self._access.keepalive_s
            )
        except (OSError, ValueError) as err:
            raise PublishError(
                f"cannot connect to MQTT broker {self._access.address}: {err}"
            ) from None
        self._misc = asyncio.create_task(self._housekeeping())
        try:
            await asyncio.wait_for(self._connected, wait_s)
        except TimeoutError:
            await self.close()
            raise PublishError(f"no CONNACK from {self._access.address} in {wait_s:g} s") from None

    async def close(self) -> None:
        """Disconnect cleanly (DISCONNECT sent) and stop the housekeeping task."""
        self._closing = True
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
        if self._sock is not None:
            self._client.disconnect()
            self._client.loop_write()  # flush DISCONNECT; paho then closes the socket
        if self._sock is not None:  # paho did not close it (e.g. the write failed)
            self._on_socket_close(self._client, None, self._sock)
            self._sock.close()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._client.loop_misc()

    # --- publishing ----------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, user_properties: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Queue one QoS 1 message; the caller keeps ``inflight`` below ``capacity``."""
        if self.tally.error is not None:
            raise self.tally.error
        properties = (
            cast(Properties, PackedProperties(user_properties)) if user_properties else None
        )
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise PublishError(f"paho refused to publish on {topic}: {mqtt.error_string(info.rc)}")
        self.tally.inflight += 1

    # --- paho callbacks (all on the event loop's thread) ---------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert self._connected is not None
        if self._connected.done():
            return
        if reason.is_failure:
            who = f" as {self._access.username}" if self._access.username else " anonymously"
            self._connected.set_exception(
                PublishError(f"broker {self._access.address} refused the connection{who}: {reason}")
            )
            return
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        if isinstance(receive_maximum, int) and receive_maximum > 0:
            self.capacity = min(self._max_inflight, receive_maximum)
        self._connected.set_result(None)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._closing:
            error = PublishError(f"lost the MQTT connection: {reason}")
            self.tally.error = self.tally.error or error
            if self._connected is not None and not self._connected.done():
                self._connected.set_exception(error)
        self.tally.progress.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        tally = self.tally
        tally.inflight -= 1
        if reason.is_failure:
            tally.refused += 1
            log.warning("broker refused message %d from %s: %s", mid, self._access.username, reason)
        else:
            tally.acked += 1
        assert self._loop is not None
        tally.last_ack_at = self._loop.time()
        tally.progress.set()

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._sock = sock
        self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)
