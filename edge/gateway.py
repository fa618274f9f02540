"""The edge loop: local broker -> queue file -> central broker, nothing lost on the way.

Two paho clients (MQTT 5, callback API 2, each on its own network thread that reconnects
with backoff) and one loop thread that alone touches the queue file:

* **Local side** (the gateway's own Mosquitto, where nearby devices publish): a persistent
  session (fixed client id, ``clean_start=False``, ``SessionExpiryInterval``) with
  ``manual_ack=True`` and Receive Maximum, subscribed at QoS 1 to every device topic
  (``devices.topics.SUBSCRIPTIONS``). A burst (``edge.batch_ms``) is written in one
  transaction, and only then acked, in arrival order. Acks carry the connection generation:
  a message that arrived on an earlier connection is never acked on a later one (its
  packet id may name another message by then); the broker redelivers it instead.
* **Central side**: QoS 1 publishes with the same topic, payload, content type and user
  properties, plus :data:`EDGE_RX_PROPERTY` (the edge's receive time, ms since the epoch)
  and :data:`EDGE_NAME_PROPERTY`. The bridge keeps user properties as ``kf.up.<name>``
  headers on ``kotaflow.raw`` (kotaflow/wire/raw.py), and the validate stage takes the
  edge time as the "now" of decoding (``RawEnvelope.taken_ms``): a payload without its own
  time keeps the time it was taken. A row is deleted only after its PUBACK; a PUBACK
  with a failure reason moves it to the queue's ``refused`` table (logged, counted).
  Unacked publishes are resent by paho after a reconnect; after a restart everything still
  in the file is sent again: at most duplicates.
* **Live first**: on every (re)connect everything already queued is *backlog*
  (sequence <= the floor taken then); newer rows are *live*. Live rows take any free
  in-flight slot; backlog rows only ``max_in_flight - live_reserve`` slots and at most
  ``backlog_rate_per_s``. Within live and within backlog, order is the queue's order, so
  each device's messages stay in order within each; a device's backlog is always older
  than its live data, which reaches the pipeline first (the pipeline keys by device time
  and corrects late windows, processors/aggregate).
* **Budget**: at :attr:`Level.FULL` the local session is disconnected (nothing is acked, so
  the local broker keeps the messages) until the queue is back under 90% of its budget.
"""

from __future__ import annotations

import logging
import queue as threadqueue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.topics import SUBSCRIPTIONS
from edge.metrics import EdgeMetrics
from edge.queue import EdgeQueue, Incoming, Level, Queued, QueueFullError
from edge.report import Counters, GatewayReporter
from kotaflow.mqtt import MqttAccess
from kotaflow.settings import EdgeSettings
from kotaflow.wire.raw import EDGE_NAME_PROPERTY, EDGE_RX_PROPERTY

log = logging.getLogger("kotaflow.edge")

DELETE_EVERY_S = 0.5
"""Confirmed rows are deleted in one transaction at most this often (SD-card writes)."""
STATS_EVERY_S = 1.0
RESUME_FRACTION = 0.9


@dataclass
class _Link:
    """What the central client's callbacks report to the loop thread."""

    up: threading.Event = field(default_factory=threading.Event)
    connects: int = 0
    drops: int = 0
    acks: threadqueue.SimpleQueue[tuple[int, int, str]] = field(
        default_factory=threadqueue.SimpleQueue
    )


class Gateway:
    """One edge: call :meth:`run` on a thread of its own; :meth:`stop` ends it."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: EdgeQueue,
        local: MqttAccess,
        central: MqttAccess,
        central_client_id: str,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self._cfg = settings
        self._queue = store
        self._local_access = local
        self._central_access = central
        self._central_id = central_client_id
        self.metrics = metrics or EdgeMetrics()
        self._stopping = threading.Event()
        self._arrivals: threadqueue.SimpleQueue[tuple[int, int, int, Incoming]] = (
            threadqueue.SimpleQueue()
        )
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._link = _Link()
        self._in_flight: dict[int, tuple[int, bool]] = {}
        """central mid -> (sequence, is backlog)."""
        self._held: set[int] = set()
        """Sequences published and not yet deleted (in flight or confirmed, delete pending)."""
        self._confirmed: list[int] = []
        self._refusals: list[tuple[int, str]] = []
        self._seen_connects = 0
        self._live_floor = store.last_seq()
        self._live_cursor = self._live_floor
        self._backlog_cursor = 0
        self._tokens = 0.0
        self._intake_paused = False
        self._warned = False
        self._local = self._make_local()
        self._central = self._make_central()
        self._reporter = (
            GatewayReporter(
                settings.device_id, settings.report_every_s, time.monotonic(), self._counters()
            )
            if settings.device_id
            else None
        )

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Connect both sides and forward until :meth:`stop`; then flush and disconnect."""
        if self._reporter is not None:
            log.info(
                "gateway readings as %s every %g s",
                self._reporter.device_id,
                self._reporter.every_s,
            )
        self._connect_local()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self._central.connect_async(
            self._central_access.host,
            self._central_access.port,
            keepalive=self._central_access.keepalive_s,
            clean_start=True,
            properties=props,
        )
        self._central.loop_start()
        last_delete = last_stats = last_tick = time.monotonic()
        try:
            while not self._stopping.is_set():
                self._intake(self._cfg.batch_ms / 1000)
                now = time.monotonic()
                self._tokens = min(
                    self._tokens + (now - last_tick) * self._cfg.backlog_rate_per_s,
                    max(1.0, self._cfg.backlog_rate_per_s),
                )
                last_tick = now
                self._take_acks()
                self._report(now)
                if now - last_delete >= DELETE_EVERY_S:
                    self._flush_confirmed()
                    last_delete = now
                self._forward()
                if now - last_stats >= STATS_EVERY_S:
                    self._show_stats()
                    last_stats = now
                self._pace_intake()
        finally:
            self._take_acks()
            self._flush_confirmed()
            self._local.disconnect()
            self._local.loop_stop()
            self._central.disconnect()
            self._central.loop_stop()
            self._show_stats()

    # -- local side --------------------------------------------------------------------

    def _make_local(self) -> paho.Client:
        client = self._local_access.client(self._cfg.client_id, manual_ack=True)
        client.suppress_exceptions = True
        client.reconnect_delay_set(int(self._cfg.reconnect_min_s), int(self._cfg.reconnect_max_s))
        client.on_connect = self._on_local_connect
        client.on_disconnect = self._on_local_disconnect
        client.on_message = self._on_local_message
        client.on_subscribe = self._on_local_subscribe
        return client

    def _connect_local(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._cfg.session_expiry_s
        props.ReceiveMaximum = self._cfg.receive_maximum
        self._local.connect_async(
            self._local_access.host,
            self._local_access.port,
            keepalive=self._local_access.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._local.loop_start()

    def _on_local_connect(
        self, client: paho.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.error("local broker %s refused the edge: %s", self._local_access.address, reason)
            return
        with self._ack_lock:
            self._generation += 1
        log.info(
            "local broker %s connected (session present: %s)",
            self._local_access.address,
            flags.session_present,
        )
        client.subscribe([(f, 1) for f in SUBSCRIPTIONS])

    def _on_local_subscribe(
        self, _c: paho.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("local broker refused device topic subscriptions: %s", refused)
        else:
            log.info("subscribed to the device topics on the local broker")

    def _on_local_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._ack_lock:
            self._generation += 1
        if not self._stopping.is_set() and not self._intake_paused:
            log.warning("local broker %s lost (%s)", self._local_access.address, reason)

    def _on_local_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        user = getattr(props, "UserProperty", None) or []
        incoming = Incoming(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=msg.retain,
            rx_ms=int(time.time() * 1000),
            content_type=getattr(props, "ContentType", None),
            user_properties=tuple((str(k), str(v)) for k, v in user),
        )
        self._arrivals.put((self._generation, msg.mid, msg.qos, incoming))

    def _intake(self, wait_s: float) -> None:
        """Collect one burst (up to ``wait_s``), store it in one transaction, then ack it."""
        burst: list[tuple[int, int, int, Incoming]] = []
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                burst.append(self._arrivals.get(timeout=left))
            except threadqueue.Empty:
                break
            if len(burst) >= 5_000:
                break
        if not burst:
            return
        fitting = self._fitting(burst)
        try:
            self._queue.append([m for *_, m in fitting])
        except QueueFullError as err:  # cannot happen after _fitting; stay safe regardless
            log.error("%s", err)
            fitting = []
        self.metrics.received.inc(len(fitting))
        with self._ack_lock:
            for generation, mid, qos, _ in fitting:
                if qos > 0 and generation == self._generation:
                    self._local.ack(mid, qos)
        if len(fitting) < len(burst):
            log.error(
                "edge queue %s full (%d of %d bytes): pausing the local intake; the local "
                "broker keeps the %d messages not stored",
                self._queue.path,
                self._queue.bytes,
                self._queue.budget_bytes,
                len(burst) - len(fitting),
            )
            self._pause_intake()

    def _fitting(
        self, burst: list[tuple[int, int, int, Incoming]]
    ) -> list[tuple[int, int, int, Incoming]]:
        """The longest prefix of ``burst`` the budget has room for (acks stay in order)."""
        room = self._queue.budget_bytes - self._queue.bytes
        for n, (*_, message) in enumerate(burst):
            room -= message.size()
            if room < 0:
                return burst[:n]
        return burst

    def _pause_intake(self) -> None:
        self._intake_paused = True
        self._local.disconnect()
        self._local.loop_stop()
        while True:  # what arrived before the disconnect is unacked: the broker resends it
            try:
                self._arrivals.get_nowait()
            except threadqueue.Empty:
                break

    def _pace_intake(self) -> None:
        if self._intake_paused and self._queue.bytes < RESUME_FRACTION * self._queue.budget_bytes:
            log.info("edge queue back under %d%% of its budget: resuming", RESUME_FRACTION * 100)
            self._intake_paused = False
            self._local = self._make_local()
            self._connect_local()

    # -- central side ------------------------------------------------------------------

    def _make_central(self) -> paho.Client:
        client = self._central_access.client(self._central_id)
        client.suppress_exceptions = True
        client.max_inflight_messages_set(self._cfg.max_in_flight)
        client.reconnect_delay_set(int(self._cfg.reconnect_min_s), int(self._cfg.reconnect_max_s))
        link = self._link

        def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
            if reason.is_failure:
                log.error("central broker refused the edge: %s", reason)
                return
            link.connects += 1
            link.up.set()
            log.info("central broker %s connected", self._central_access.address)

        def on_disconnect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if link.up.is_set() and not self._stopping.is_set():
                log.warning("central broker %s lost (%s)", self._central_access.address, reason)
                link.drops += 1
            link.up.clear()

        def on_publish(_c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
            link.acks.put((mid, reason.value, str(reason)))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        return client

    def _take_acks(self) -> None:
        while True:
            try:
                mid, code, text = self._link.acks.get_nowait()
            except threadqueue.Empty:
                return
            entry = self._in_flight.pop(mid, None)
            if entry is None:
                continue
            seq, backlog = entry
            if code >= 0x80:
                log.error("central broker refused queued message %d: %s (kept aside)", seq, text)
                self._refusals.append((seq, text))
                self.metrics.refused.inc()
            else:
                self._confirmed.append(seq)
                (self.metrics.forwarded_backlog if backlog else self.metrics.forwarded_live).inc()

    def _flush_confirmed(self) -> None:
        if self._confirmed:
            self._queue.delete(self._confirmed)
            self._held.difference_update(self._confirmed)
            self._confirmed = []
        if self._refusals:
            self._queue.refuse(self._refusals)
            self._held.difference_update(s for s, _ in self._refusals)
            self._refusals = []

    def _forward(self) -> None:
        link = self._link
        self.metrics.link_up.set(1 if link.up.is_set() else 0)
        if not link.up.is_set() or not self._central.is_connected():
            return
        if link.connects != self._seen_connects:  # a new connection: what is queued is backlog
            self._seen_connects = link.connects
            self._live_floor = self._queue.last_seq()
            self._live_cursor = max(self._live_cursor, self._live_floor)
        free = self._cfg.max_in_flight - len(self._in_flight)
        if free <= 0:
            return
        live = self._pending(self._live_cursor, free, None)
        for message in live:
            self._publish(message, backlog=False)
        if live:
            self._live_cursor = live[-1].seq
        room = min(
            self._cfg.max_in_flight - self._cfg.live_reserve - len(self._in_flight),
            int(self._tokens),
        )
        if room <= 0 or self._backlog_cursor >= self._live_floor:
            return
        backlog = self._pending(self._backlog_cursor, room, self._live_floor)
        for message in backlog:
            self._publish(message, backlog=True)
        self._tokens -= len(backlog)
        # Nothing left to take below the floor (what is held is paho's to resend): done.
        self._backlog_cursor = backlog[-1].seq if backlog else self._live_floor

    def _pending(self, after: int, limit: int, up_to: int | None) -> list[Queued]:
        rows = self._queue.take(after, limit + len(self._held), up_to)
        return [r for r in rows if r.seq not in self._held][:limit]

    def _publish(self, message: Queued, backlog: bool) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [
            *message.user_properties,
            (EDGE_RX_PROPERTY, str(message.rx_ms)),
            (EDGE_NAME_PROPERTY, self._cfg.name),
        ]
        if message.content_type:
            props.ContentType = message.content_type
        info = self._central.publish(
            message.topic, message.payload, qos=1, retain=message.retain, properties=props
        )
        self._in_flight[info.mid] = (message.seq, backlog)
        self._held.add(message.seq)

    # -- the gateway's own readings (edge/report.py) ------------------------------------

    def _counters(self) -> Counters:
        return Counters(
            self.metrics.received_total(), self.metrics.forwarded_total(), self._link.drops
        )

    def _report(self, now: float) -> None:
        """Queue the gateway reading when due: live at once while the link is up, history
        in the backlog while it is down."""
        reporter = self._reporter
        if reporter is None:
            return
        reporter.observe(now, self._link.up.is_set())
        if not reporter.due(now):
            return
        reading = reporter.report(
            now, int(time.time() * 1000), self._queue.stats(), self._counters()
        )
        try:
            self._queue.append([reading])
        except QueueFullError:
            log.warning("edge queue full: gateway reading of %s not queued", reporter.device_id)

    def _show_stats(self) -> None:
        self.metrics.show(self._queue.stats())
        level = self._queue.level()
        if level is not Level.OK and not self._warned:
            log.warning(
                "edge queue %s at %s: %d bytes of a %d-byte budget",
                self._queue.path,
                level,
                self._queue.bytes,
                self._queue.budget_bytes,
            )
        self._warned = level is not Level.OK
