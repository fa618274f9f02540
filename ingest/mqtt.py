"""The MQTT side of the bridge: one paho client, its persistent session, and the hand-off.

Session: MQTT 5, a fixed client id, ``clean_start=False`` and a session expiry interval, so
the broker keeps our subscriptions and every unacked message while we are away. Plain QoS 1
subscriptions to ``devices.topics.SUBSCRIPTIONS``, made on every connect (retain handling
1: retained messages only for a new subscription), so the session always has them. No
``$share/``: a shared subscription's messages are dealt among its members, and a device
account (granted the SUBSCRIBE although it may read nothing) or a stopped member would take
its share away. With plain subscriptions every other session only gets copies. Only one
bridge process holds this session at a time (:mod:`ingest.lease`). The deprecated
``share_group`` setting still subscribes through ``$share/<group>/``; without it, the
filters of the old default group are unsubscribed, so a session from before is converted.
``manual_ack=True``: paho never acks on its own; the bridge calls :meth:`MqttIntake.ack`
once Kafka has the message.

Session backlog: on a resumed session (``session_present``) the broker first delivers what
it queued while we were away. To know where that backlog ends, the bridge publishes a
*marker* (a fresh nonce, QoS 1) to its own topic ``kotaflow-bridge/<client id>/caught-up``
right after connecting; the broker queues it behind the backlog. Everything before the
marker is handed over as backlog (exempt from the per-device rate limit, see
:mod:`ingest.ratelimit`); the marker itself is acked in order and never forwarded. If the
broker refuses the marker (an ACL without the bridge's marker topic) or it has not come
after ``BACKLOG_MAX_S``, the exemption ends with a warning.

Threads: paho's network thread (``loop_start``) runs the callbacks and reconnects with
backoff. The bulk read path (:mod:`ingest.fastpaho`) hands over every ``recv``'s worth of
messages as one list (at low rates gathered for ``bridge.linger_ms`` first): the intake
takes in-flight slots for them, appends the list to the inbox and, if the asyncio side is
not already due to look, wakes it once with ``call_soon_threadsafe`` (one wake-up per burst,
not per message). Messages that take paho's own path (``on_message``: MQTT 5 properties,
QoS 2) join the same inbox. paho's per-filter callbacks never fire for ``$share/`` filters,
so nothing relies on them. ``suppress_exceptions`` keeps the network thread alive whatever
a callback does.

Memory is bounded twice: MQTT 5 Receive Maximum caps what the broker sends unacked, and a
local gate (``max_in_flight``) blocks the network thread while that many received messages
are not yet in Kafka (it also bounds QoS 0 deliveries, which Receive Maximum does not
count).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.topics import SUBSCRIPTIONS
from ingest.edge import Inbound, decode_topic, user_properties_of
from ingest.fastpaho import Arrival, FastClient
from ingest.metrics import BridgeMetrics
from kotaflow.mqtt import MqttAccess
from kotaflow.settings import BridgeSettings

log = logging.getLogger("kotaflow.bridge.mqtt")

_SLOT_WAIT_S = 0.25

BACKLOG_MAX_S = 600.0
"""The longest a session backlog is exempt from the rate limit if its marker never comes
(the broker queues at most 10^6 messages for us: a minute's drain)."""
LEGACY_SHARE_GROUP = "kotaflow-bridge"
"""``bridge.share_group``'s default before issue 16."""

LIVE, BACKLOG, MARKER = 0, 1, 2
"""What a :data:`Received` burst is: live traffic, session backlog, or our backlog marker."""

Received = tuple[int, float, list[Arrival], int]
"""(connection generation, receive time (monotonic), messages, LIVE/BACKLOG/MARKER); the
generation tells the bridge which connection (and so which ack window) they came on."""


def subscription_filters(share_group: str | None) -> list[str]:
    """The topic filters the bridge subscribes to, shared when a (deprecated) group is set."""
    if share_group is None:
        return list(SUBSCRIPTIONS)
    return [f"$share/{share_group}/{f}" for f in SUBSCRIPTIONS]


def marker_topic(client_id: str) -> str:
    """Where the bridge publishes the marker that ends its session backlog (its ACL allows
    ``kotaflow-bridge/#``, devices/credentials.py)."""
    return f"kotaflow-bridge/{client_id}/caught-up"


def inbound_of(arrival: Arrival) -> Inbound:
    """Everything the bridge keeps of one message, for the paths that need all of it."""
    _, qos, _, retain, topic, payload, props = arrival
    return Inbound(
        topic=decode_topic(topic),
        payload=payload,
        qos=qos,
        retain=retain,
        content_type=getattr(props, "ContentType", None) if props is not None else None,
        user_properties=user_properties_of(
            getattr(props, "UserProperty", None) if props is not None else None
        ),
    )


class InFlightGate:
    """Counts messages received and not yet confirmed by Kafka; blocks the taker when full.

    Taken a burst at a time (it may overshoot by one burst), given back per Kafka batch.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def take(self, count: int, keep_waiting: Callable[[], bool]) -> bool:
        """Take ``count`` slots, waiting while the gate is full; False if ``keep_waiting``
        said to give up."""
        with self._cond:
            while self._used >= self._limit:
                if not self._cond.wait(_SLOT_WAIT_S) and not keep_waiting():
                    return False
            self._used += count
            return True

    def release(self, count: int) -> None:
        with self._cond:
            self._used -= count
            if self._used < self._limit:
                self._cond.notify_all()


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
        self.gate = InFlightGate(bridge.max_in_flight)
        self._generation = 0
        self._accepting = True
        self._wake_pending = False
        self._marker_topic = marker_topic(bridge.client_id)
        self._marker: tuple[bytes, bytes, int] | None = None
        """While a backlog is open: (marker topic, its nonce, mid of our marker publish)."""
        self._backlog_since = 0.0
        self._backlog_count = 0
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

    def ack(self, pubacks: bytes) -> None:
        """Send ready-made PUBACK packets (:class:`ingest.acks.AckWindow` builds them)."""
        self._client.ack_raw(pubacks)

    def release(self, count: int) -> None:
        """Give back in-flight slots of messages Kafka confirmed or the bridge gave up."""
        if count > 0:
            self.gate.release(count)

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
        arrival: Arrival = (
            msg.mid,
            msg.qos,
            bool(msg.dup),
            bool(msg.retain),
            msg._topic,
            bytes(msg.payload),
            msg.properties,
        )
        self._on_arrivals([arrival], msg.timestamp)

    def _on_arrivals(self, arrivals: list[Arrival], received_at: float) -> None:
        if self._marker is None or not arrivals:
            self._hand_over(arrivals, received_at, LIVE)
        else:
            self._split_backlog(arrivals, received_at)

    def _split_backlog(self, arrivals: list[Arrival], received_at: float) -> None:
        """Hand a burst over as backlog up to our marker, live traffic after it."""
        assert self._marker is not None
        topic, nonce, _ = self._marker
        start = 0
        for i, arrival in enumerate(arrivals):
            if arrival[4] != topic:
                continue
            if i > start:
                self._hand_over(arrivals[start:i], received_at, BACKLOG)
            self._backlog_count += i - start
            self._hand_over([arrival], received_at, MARKER)  # acked in order, not forwarded
            start = i + 1
            if arrival[5] == nonce:  # ours (an older one is a redelivery: skip it)
                self._end_backlog("caught up with the session backlog", logging.INFO)
                if start < len(arrivals):
                    self._hand_over(arrivals[start:], received_at, LIVE)
                return
        if start < len(arrivals):
            self._backlog_count += len(arrivals) - start
            self._hand_over(arrivals[start:], received_at, BACKLOG)
        if received_at - self._backlog_since > BACKLOG_MAX_S:
            self._end_backlog("backlog marker overdue; rate limits apply again", logging.WARNING)

    def _end_backlog(self, why: str, level: int) -> None:
        self._marker = None
        log.log(
            level,
            why,
            extra={
                "backlog_messages": self._backlog_count,
                "seconds": round(time.monotonic() - self._backlog_since, 3),
            },
        )

    def _hand_over(self, arrivals: list[Arrival], received_at: float, kind: int) -> None:
        if not self._accepting:
            return  # stopping: left unacked, the broker redelivers them
        if arrivals and not self.gate.take(len(arrivals), self._is_accepting):
            return
        self.inbox.append((self._generation, received_at, arrivals, kind))
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake)

    def _is_accepting(self) -> bool:
        return self._accepting

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
        # An empty burst tells the bridge at once, not at the first message, that this is a
        # new connection: it then stops acking the last one's deliveries (the broker
        # redelivers those) before any packet id could be confused across connections.
        self._on_arrivals([], time.monotonic())
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
        self._marker = None
        share_group = self._bridge.share_group
        # Every connect: a session from before may lack a filter, or hold the old $share ones.
        options = SubscribeOptions(qos=1, retainHandling=1)
        filters = subscription_filters(share_group)
        if share_group is None:
            filters.append(self._marker_topic)
        client.subscribe([(f, options) for f in filters])
        if share_group is None and flags.session_present:
            client.unsubscribe(subscription_filters(LEGACY_SHARE_GROUP))
            self._open_backlog(client)

    def _open_backlog(self, client: paho.Client) -> None:
        """Publish the marker that will come right after the session backlog."""
        nonce = uuid.uuid4().hex.encode()
        info = client.publish(self._marker_topic, nonce, qos=1)
        self._backlog_since = time.monotonic()
        self._backlog_count = 0
        self._marker = (self._marker_topic.encode(), nonce, info.mid)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        marker = self._marker
        if marker is not None and mid == marker[2] and reason_code.is_failure:
            self._end_backlog(
                f"the broker refused the backlog marker ({reason_code}): the session backlog "
                "is rate-limited like live traffic (ACL lacks kotaflow-bridge/#? `kotaflow "
                "devices credentials` regenerates it)",
                logging.WARNING,
            )

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
        client.linger_s = self._bridge.linger_ms / 1000
        client.reconnect_delay_set(
            min_delay=max(1, round(self._bridge.reconnect_min_s)),
            max_delay=max(1, round(self._bridge.reconnect_max_s)),
        )
        self._access.apply(client)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_arrivals = self._on_arrivals
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        return client
