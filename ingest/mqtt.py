"""The MQTT side of the bridge: one paho client, its persistent session, and the hand-off.

Session: MQTT 5, a fixed client id, ``clean_start=False`` and a session expiry interval, so
the broker keeps our subscriptions and every unacked message while we are away. QoS 1
subscriptions to ``devices.topics.SUBSCRIPTIONS`` (through ``$share/<group>/`` when a share
group is set: several bridges then split the stream). ``manual_ack=True``: paho never acks
on its own; the bridge calls :meth:`MqttIntake.ack` once Kafka has the message.

Threads: paho's network thread (``loop_start``) runs the callbacks and reconnects with
backoff. ``on_message`` only takes an in-flight slot, appends to the inbox and, if the
asyncio side is not already due to look, wakes it once with ``call_soon_threadsafe`` (one
wake-up per burst, not per message). Every message is routed there: paho's per-filter
callbacks never fire for ``$share/`` filters. ``suppress_exceptions`` keeps the network
thread alive whatever a callback does.

Memory is bounded twice: MQTT 5 Receive Maximum caps what the broker sends unacked, and a
local semaphore (``max_in_flight``) blocks the network thread when full (it also bounds
QoS 0 deliveries, which Receive Maximum does not count).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.topics import SUBSCRIPTIONS
from ingest.edge import Inbound, user_properties_of
from ingest.fastpaho import FastClient
from ingest.metrics import BridgeMetrics
from kotaflow.mqtt import MqttAccess
from kotaflow.settings import BridgeSettings

log = logging.getLogger("kotaflow.bridge.mqtt")

_SLOT_WAIT_S = 0.25

Received = tuple[int, int, int, bool, float, Inbound]
"""(connection generation, mid, qos, dup, receive time (monotonic), message); the
generation tells the bridge which connection (and so which ack window) a message came on."""


def subscription_filters(share_group: str | None) -> list[str]:
    """The topic filters the bridge subscribes to, shared when a group is set."""
    if share_group is None:
        return list(SUBSCRIPTIONS)
    return [f"$share/{share_group}/{f}" for f in SUBSCRIPTIONS]


def inbound_of(msg: paho.MQTTMessage) -> Inbound:
    """Copy out what the bridge keeps of a paho message."""
    try:
        topic = msg.topic
    except UnicodeDecodeError:  # brokers should refuse these; never crash on one
        topic = msg._topic.decode("utf-8", "backslashreplace")
    props = msg.properties
    payload = msg.payload
    return Inbound(
        topic=topic,
        payload=payload if type(payload) is bytes else bytes(payload),
        qos=msg.qos,
        retain=bool(msg.retain),
        content_type=getattr(props, "ContentType", None) if props is not None else None,
        user_properties=user_properties_of(
            getattr(props, "UserProperty", None) if props is not None else None
        ),
    )


class MqttIntake:
    """A persistent-session paho client that hands messages to an asyncio loop."""

    def __init__(
        self,
        access: MqttAccess,
        bridge: BridgeSettings,
        loop: asyncio.AbstractEventLoop,
        wake: Callable[[], None],
        metrics: BridgeMetrics,
    ) -> None:
        self._access = access
        self._bridge = bridge
        self._loop = loop
        self._wake = wake
        self._metrics = metrics
        self.inbox: deque[Received] = deque()
        self._slots = threading.Semaphore(bridge.max_in_flight)
        self._generation = 0
        self._accepting = True
        self._wake_pending = False
        self._client = self._make_client()

    # -- control, from the asyncio side -------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho retries with backoff until the broker answers."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._bridge.session_expiry_s
        props.ReceiveMaximum = self._bridge.receive_maximum
        self._client.connect_async(
            self._access.host,
            self._access.port,
            keepalive=self._access.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def rearm(self) -> None:
        """Called by the consumer before it empties the inbox: the next arrival wakes it."""
        self._wake_pending = False

    def ack(self, deliveries: list[tuple[int, int]]) -> None:
        """Ack (mid, qos) pairs in the order given (QoS 0 needs no ack)."""
        self._client.ack_many(mid for mid, qos in deliveries if qos == 1)

    def release(self, count: int) -> None:
        """Give back in-flight slots of deliveries that were acked or abandoned."""
        if count > 0:
            self._slots.release(count)

    def stop_intake(self) -> None:
        """Take no more messages; later arrivals stay unacked for the broker to redeliver."""
        self._accepting = False

    def close(self) -> None:
        """Disconnect (pending acks are written first) and stop the network thread."""
        self._accepting = False
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks, on the network thread ---------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """paho's path: PUBLISH packets with MQTT 5 properties (content type, user ...)."""
        self._on_arrival(msg.mid, msg.qos, bool(msg.dup), msg.timestamp, inbound_of(msg))

    def _on_arrival(self, mid: int, qos: int, dup: bool, received_at: float, msg: Inbound) -> None:
        slots = self._slots
        if not slots.acquire(blocking=False):
            while not slots.acquire(timeout=_SLOT_WAIT_S):
                if not self._accepting:
                    return
        if not self._accepting:
            slots.release()
            return
        self.inbox.append((self._generation, mid, qos, dup, received_at, msg))
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused", extra={"reason": str(reason_code)})
            return
        self._generation += 1
        self._metrics.mqtt_connects.inc()
        log.info(
            "MQTT connected",
            extra={
                "broker": self._access.address,
                "user": self._access.username,
                "client_id": self._bridge.client_id,
                "session_present": flags.session_present,
                "connection": self._generation,
            },
        )
        if not flags.session_present:
            options = SubscribeOptions(qos=1)
            client.subscribe([(f, options) for f in subscription_filters(self._bridge.share_group)])

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[Any],
        properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("MQTT subscription refused", extra={"reasons": refused})
        else:
            filters = subscription_filters(self._bridge.share_group)
            log.info("MQTT subscribed", extra={"filters": filters})

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        level = logging.INFO if not self._accepting else logging.WARNING
        log.log(level, "MQTT disconnected", extra={"reason": str(reason_code)})

    def _make_client(self) -> FastClient:
        client = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=self._bridge.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        client.suppress_exceptions = True
        client.reconnect_delay_set(
            min_delay=max(1, round(self._bridge.reconnect_min_s)),
            max_delay=max(1, round(self._bridge.reconnect_max_s)),
        )
        self._access.apply(client)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_arrival = self._on_arrival
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        return client
