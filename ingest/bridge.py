"""The MQTT -> Kafka bridge: every device message lands in the raw topic, nothing is lost.

Guarantee: at-least-once from the broker to Kafka. A message is acked to the broker only
after Kafka acknowledged its record (idempotent producer, ``acks=all``), and acks follow the
order of arrival (:mod:`ingest.acks`). Whatever is not acked stays in our persistent MQTT
session and is redelivered, so a crash or a Kafka outage costs duplicates, never messages.
Duplicates are counted (``redelivered``) and are harmless downstream (InfluxDB points with
the device's timestamp overwrite themselves).

One MQTT session per broker, held by one process: every replica uses the same client id
and plain (not ``$share/``) subscriptions; a lease through Kafka (:mod:`ingest.lease`)
picks the *active* one, the others stand by and take the session over within seconds when
the active dies. No device account can take a share of the bridge's messages, and no
session that no bridge reads holds any (see :mod:`ingest.mqtt`).

Flow, in one asyncio task (the *pump*): paho's network thread appends bursts of messages
to the inbox (:mod:`ingest.mqtt`, :mod:`ingest.fastpaho`); the pump routes each message at
the edge (:mod:`ingest.edge`: raw record, or a dead letter for oversize / unknown topic /
rate limited; the session backlog is exempt from the rate limit) and appends the record to
its partition's open batch (:mod:`ingest.batcher`), without awaiting per message. A record
the producer would refuse (over :mod:`ingest.sizes`' record limit) becomes a compact dead
letter instead, acked like any other: no single message can stall the bridge. When Kafka
acknowledges a batch, its QoS 1 deliveries complete in the ack window (:mod:`ingest.acks`)
and the contiguous completed prefix is acked with one write.

The usual message (a known device's topic, no MQTT 5 properties, not retained) takes a
short path: its headers are the topic's cached leading headers plus the burst's receive
time and the QoS. Everything else goes through :class:`~kotaflow.wire.raw.RawEnvelope` or
:class:`~kotaflow.wire.deadletter.DeadLetter`; a unit test pins that both paths give the same
record.

Failure and recovery:

- MQTT connection lost: paho reconnects with backoff and resumes the session; the broker
  redelivers the unacked messages, the old connection's pending deliveries are dropped
  unacked.
- Kafka fails (a produce errors or times out): the bridge stops acking at once, disconnects
  from the broker (which keeps the unacked messages), throws the producer away, waits with
  exponential backoff, and starts a fresh producer and MQTT connection; the broker then
  redelivers everything that was not acked.
- SIGTERM/SIGINT, or the lease lost: take no new messages, let the in-flight ones reach
  Kafka and be acked (up to ``drain_timeout_s``), disconnect, flush and stop the producer;
  then leave the lease group (SIGTERM: a standby takes over at once) or stand by again.

Refusals: every dead letter has its reason, is counted in
``kotaflow_bridge_deadlettered_total{reason}`` and summarised in one log line per interval
(:class:`~ingest.refusals.RefusalLog`), not one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from devices.catalogue import load_catalogue
from ingest.acks import AckWindow
from ingest.batcher import KafkaBatcher, Lane, RecordTooLargeError
from ingest.edge import EdgePolicy, Route
from ingest.fastpaho import Arrival
from ingest.lease import BridgeLease
from ingest.metrics import BridgeMetrics
from ingest.mqtt import BACKLOG, MARKER, MqttIntake, inbound_of
from ingest.producer import make_bridge_producer
from ingest.ratelimit import DeviceRateLimiter, default_burst
from ingest.refusals import RefusalLog
from ingest.sizes import SizeLimits, check_topic_sizes
from kotaflow.kafka import client_options, topic_max_message_bytes
from kotaflow.logs import ONE_LINE_EACH
from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings
from kotaflow.waiting import wait_or_stop
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.raw import plain_tails
from kotaflow.wire.reasons import Reason

log = logging.getLogger("kotaflow.bridge")

_PRODUCER_STOP_TIMEOUT_S = 10.0
_DRAIN_POLL_S = 0.02


class _Outcome(enum.Enum):
    STOPPED = "stopped"
    KAFKA_FAILED = "kafka_failed"


_Item = int | tuple[int, Reason, bytes | None]
"""What the batcher carries per record: the delivery's ack-window sequence number (-1 for
QoS 0), with the reason and device key for a dead letter."""


@dataclass(eq=False)
class _Session:
    """One MQTT connection's worth of state, thrown away whole on Kafka failure."""

    producer: AIOKafkaProducer
    intake: MqttIntake
    wake: asyncio.Event
    window: AckWindow = field(default_factory=AckWindow)
    generation: int = 0
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    batcher: KafkaBatcher[_Item] = field(init=False)
    lanes: dict[bytes, Lane[_Item]] = field(default_factory=dict)
    """The raw topic's lane per Kafka key (device), looked up once per device."""
    pubacks: list[bytes] = field(default_factory=list)
    """PUBACK packets of this loop iteration, sent as one write (:meth:`Bridge._complete`)."""


class Bridge:
    """Runs until the ``stop`` event passed to :meth:`run` is set."""

    def __init__(self, settings: Settings, metrics: BridgeMetrics | None = None) -> None:
        self._settings = settings
        self._cfg = settings.bridge
        self._raw_topic = settings.kafka.topics.raw
        self._dead_topic = settings.kafka.topics.deadletter
        self.metrics = metrics or BridgeMetrics()
        self.limits = SizeLimits.of(self._cfg)
        self.rate_burst = self._cfg.rate_burst or default_burst(
            self._cfg.device_buffer_s,
            (t.interval_s for t in load_catalogue(settings.catalogue_file).types.values()),
        )
        limiter = (
            DeviceRateLimiter(self._cfg.rate_per_s, self.rate_burst)
            if self._cfg.rate_per_s is not None
            else None
        )
        self._edge = EdgePolicy(self.limits.payload_bytes, limiter)
        self._refusals = RefusalLog(log)
        self._kafka_servers = settings.kafka.bootstrap_servers
        # Credentials are resolved now, so a missing one stops the bridge at start.
        self._mqtt = mqtt_access(settings, Account.BRIDGE)
        self._kafka_options = client_options(settings)

    async def run(self, stop: asyncio.Event) -> None:
        """Check the size limits, then be the active bridge whenever the lease says so.

        Raises :class:`~ingest.sizes.SizeLimitError` if Kafka's topics accept less than the
        bridge may send."""
        stop_metrics = (
            self.metrics.serve(self._cfg.metrics_port) if self._cfg.metrics_port else None
        )
        lease = BridgeLease(self._settings)
        log.info(
            "bridge starting",
            extra={
                "client_id": self._cfg.client_id,
                "lease_group": lease.group_id,
                "raw_topic": self._raw_topic,
                "metrics_port": self._cfg.metrics_port,
                "max_payload_bytes": self.limits.payload_bytes,
                "rate_per_s": self._cfg.rate_per_s,
                "rate_burst": self.rate_burst,
            },
        )
        if self._cfg.share_group is not None:
            log.warning(
                "bridge.share_group is deprecated and still honoured: subscribing through "
                f"$share/{self._cfg.share_group}/; a device account subscribed to that filter, "
                "or a share-group member that is offline, takes messages away from this "
                "bridge (issue 16). Unset it (null, or KOTAFLOW_BRIDGE__SHARE_GROUP='') and "
                "run replicas with one client id: the lease picks the active one.",
                extra={"share_group": self._cfg.share_group},
            )
        leave = asyncio.Event()  # set once no MQTT connection is left: then leave the group
        leasing = asyncio.create_task(lease.run(leave), name="bridge-lease")
        try:
            if not await self._check_sizes(stop):
                return
            while not stop.is_set():
                if not await _until_set(lease.held, stop):
                    return
                if not lease.begin_term():
                    continue
                self.metrics.lease_held.set(1)
                ended = asyncio.Event()
                term_over = asyncio.create_task(_set_when(ended, lease.lost, stop))
                try:
                    await self._active(ended)
                finally:
                    term_over.cancel()
                    self.metrics.lease_held.set(0)
                    lease.released()
        finally:
            leave.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(leasing, _PRODUCER_STOP_TIMEOUT_S)
            if stop_metrics is not None:
                stop_metrics()
            log.info("bridge stopped")

    async def _active(self, end: asyncio.Event) -> None:
        """One term as the active bridge: sessions (recovering from Kafka failures) until
        ``end`` is set."""
        delay = self._cfg.reconnect_min_s
        while not end.is_set():
            producer = await self._start_producer(end)
            if producer is None:
                return
            outcome = await self._session(producer, end)
            if outcome is _Outcome.STOPPED:
                return
            log.warning("recovering from a Kafka failure", extra={"retry_in_s": delay})
            if await wait_or_stop(end, delay):
                return
            delay = min(delay * 2, self._cfg.reconnect_max_s)

    async def _check_sizes(self, stop: asyncio.Event) -> bool:
        """The topics take what the bridge may send (retried while Kafka does not answer);
        False if stopped first."""
        topics = [self._raw_topic, self._dead_topic]
        delay = self._cfg.reconnect_min_s
        while not stop.is_set():
            try:
                found = await topic_max_message_bytes(self._kafka_options, topics)
            except (KafkaError, OSError) as err:
                log.warning(
                    "Kafka unavailable",
                    extra={"error": repr(err), "retry_in_s": delay} | ONE_LINE_EACH,
                )
                if await wait_or_stop(stop, delay):
                    return False
                delay = min(delay * 2, self._cfg.reconnect_max_s)
                continue
            check_topic_sizes(self.limits, found)
            return True
        return False

    # -- one session ------------------------------------------------------------------

    async def _session(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> _Outcome:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        intake = MqttIntake(self._mqtt, self._cfg, loop, wake.set, self.metrics)
        session = _Session(producer, intake, wake)
        session.batcher = KafkaBatcher(
            producer,
            functools.partial(self._on_batch, session),
            0.0,  # the lingering is done on the MQTT side (bridge.linger_ms), once per window
            self.limits.record_bytes,
        )
        self.metrics.track_in_flight(lambda: len(session.window))
        pump = asyncio.create_task(self._pump(session), name="bridge-pump")
        stopping = asyncio.create_task(stop.wait())
        failing = asyncio.create_task(session.failed.wait())
        try:
            await session.batcher.prepare(self._raw_topic, self._dead_topic)
            intake.start()
            await asyncio.wait({pump, stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() and not session.failed.is_set():
                await self._drain(session)
                outcome = _Outcome.STOPPED
            else:
                if pump.done() and not pump.cancelled() and pump.exception() is not None:
                    self._fail(session, pump.exception())
                outcome = _Outcome.KAFKA_FAILED
        except KafkaError as err:  # the topics' metadata could not be had
            self._fail(session, err)
            outcome = _Outcome.KAFKA_FAILED
        finally:
            for task in (pump, stopping, failing):
                task.cancel()
            await asyncio.gather(pump, stopping, failing, return_exceptions=True)
            await session.batcher.close()
            abandoned = len(session.window) + sum(len(m) for _, _, m, _ in intake.inbox)
            await asyncio.to_thread(intake.close)
            if abandoned:
                self.metrics.dropped_unacked.inc(abandoned)
                log.warning("left unacked for redelivery", extra={"messages": abandoned})
            await self._stop_producer(producer)
        return outcome

    async def _pump(self, s: _Session) -> None:
        inbox = s.intake.inbox
        while True:
            await s.wake.wait()
            s.wake.clear()
            s.intake.rearm()
            while inbox and not s.failed.is_set():
                generation, received_at, arrivals, kind = inbox.popleft()
                try:
                    self._forward(s, generation, received_at, arrivals, kind)
                except KafkaError as err:
                    self._fail(s, err)
                    return
                if inbox:
                    # Between bursts, let the batch senders and Kafka callbacks run: a
                    # steady inbox would otherwise starve them, and acks would stall.
                    await asyncio.sleep(0)

    def _forward(
        self,
        s: _Session,
        generation: int,
        received_at: float,
        arrivals: list[Arrival],
        kind: int,
    ) -> None:
        """Route one burst of messages into the open batches (no await: the hot path)."""
        window = s.window
        if generation != s.generation:
            s.generation = generation  # a new connection: the broker redelivers the rest
            s.pubacks.clear()  # the old connection's packet ids mean nothing on the new one
            dropped = window.reset()
            if dropped:
                self.metrics.dropped_unacked.inc(dropped)
        if not arrivals:
            return  # only the news of a new connection
        window.mark_received(received_at)
        if kind == MARKER:  # the end of the session backlog: acked in order, not forwarded
            s.intake.release(len(arrivals))
            self._complete(s, [window.open(a[0]) for a in arrivals if a[1]])
            return
        limited = kind != BACKLOG
        if not limited:
            self.metrics.backlog_exempt.inc(len(arrivals))
        rx_ms = time.time_ns() // 1_000_000
        tails = plain_tails(rx_ms)
        route_of = self._edge.route
        lanes = s.lanes
        redelivered = 0
        for arrival in arrivals:
            mid, qos, dup, retain, topic, payload, props = arrival
            redelivered += dup
            seq = window.open(mid) if qos else -1
            route = route_of(topic, len(payload), received_at, limited)
            if type(route) is not Route or retain or props is not None:
                self._forward_other(s, seq, arrival, route, rx_ms)
                continue
            lane = lanes.get(route.key)
            if lane is None:
                lane = lanes[route.key] = s.batcher.lane(self._raw_topic, route.key)
            try:
                lane.append(route.key, payload, route.topic_headers + tails[qos], seq, rx_ms)
            except RecordTooLargeError as err:
                self._dead_letter(s, seq, self._edge.refused(inbound_of(arrival), str(err)), rx_ms)
        self.metrics.received.inc(len(arrivals))
        if redelivered:
            self.metrics.redelivered.inc(redelivered)

    def _forward_other(
        self, s: _Session, seq: int, arrival: Arrival, route: Route | Reason, rx_ms: int
    ) -> None:
        """The long path: dead letters, retained messages, MQTT 5 properties."""
        msg = inbound_of(arrival)
        if isinstance(route, Reason):
            self._dead_letter(s, seq, self._edge.dead_letter(msg, route), rx_ms)
            return
        envelope = self._edge.envelope(msg, route, rx_ms)
        headers = envelope.headers(route.topic_headers)
        try:
            s.batcher.check(route.key, envelope.payload, headers)
        except RecordTooLargeError as err:
            self._dead_letter(s, seq, self._edge.refused(msg, str(err)), rx_ms)
            return
        lane = s.batcher.lane(self._raw_topic, route.key)
        lane.append(route.key, envelope.payload, headers, seq, rx_ms)

    def _dead_letter(self, s: _Session, seq: int, dead: DeadLetter, rx_ms: int) -> None:
        key = dead.key()
        value = dead.value()
        if len(value) > self.limits.record_bytes - len(key or b""):
            value = dead.compact().value()  # compact always fits the record limit
        lane = s.batcher.lane(self._dead_topic, key)
        lane.append(key, value, [], (seq, dead.reason, key), rx_ms)

    def _on_batch(
        self, s: _Session, topic: str, items: list[_Item], err: BaseException | None
    ) -> None:
        """Kafka answered for one batch: count it, then ack what is now a completed prefix."""
        s.intake.release(len(items))
        if err is not None:
            self._fail(s, err)
            return
        if topic == self._raw_topic:  # only sequence numbers there
            seqs = cast(list[int], items)
            self.metrics.produced.inc(len(items))
        else:
            seqs = []
            note = self._refusals.note
            for seq, reason, key in cast(list[tuple[int, Reason, bytes | None]], items):
                seqs.append(seq)
                self.metrics.deadlettered_for(reason).inc()
                note(reason, key)
            self._refusals.flush_if_due(time.monotonic())
        if s.failed.is_set():
            return  # recovering: ack nothing more, the broker will redeliver
        self._complete(s, seqs)

    def _complete(self, s: _Session, seqs: list[int]) -> None:
        """These deliveries are in Kafka: ack the completed prefix.

        The acks of every batch that completes in one loop iteration (one produce response
        answers for all partitions) go out as one write: each write wakes paho's thread."""
        pubacks, count, oldest = s.window.complete(seqs)
        if count:
            if not s.pubacks:
                asyncio.get_running_loop().call_soon(self._send_acks, s)
            s.pubacks.append(pubacks)
            self.metrics.acked.inc(count)
            if oldest is not None:
                # One observation per ack burst, of its oldest message (the worst case):
                # one per message was 7% of the bridge's CPU.
                self.metrics.ack_latency.observe(time.monotonic() - oldest)

    @staticmethod
    def _send_acks(s: _Session) -> None:
        if s.pubacks:  # (cleared if a new connection came first)
            packets = b"".join(s.pubacks)
            s.pubacks.clear()
            s.intake.ack(packets)

    def _fail(self, s: _Session, err: BaseException | None) -> None:
        if s.failed.is_set():
            return
        self.metrics.kafka_failures.inc()
        log.error(
            "produce failed; acks stopped",
            extra={"error": repr(err), "in_flight": len(s.window)},
        )
        s.failed.set()

    async def _drain(self, s: _Session) -> None:
        """Graceful stop: no new intake; wait until what was taken is in Kafka and acked."""
        s.intake.stop_intake()
        deadline = time.monotonic() + self._cfg.drain_timeout_s
        log.info("draining", extra={"in_flight": s.intake.gate.used})
        while (s.intake.inbox or s.intake.gate.used or len(s.window)) and not s.failed.is_set():
            if time.monotonic() >= deadline:
                log.warning("drain timed out", extra={"in_flight": s.intake.gate.used})
                return
            await asyncio.sleep(_DRAIN_POLL_S)

    # -- producer lifecycle ------------------------------------------------------------

    async def _start_producer(self, stop: asyncio.Event) -> AIOKafkaProducer | None:
        delay = self._cfg.reconnect_min_s
        while not stop.is_set():
            producer = make_bridge_producer(self._settings)
            try:
                await producer.start()
            except KafkaError as err:
                log.warning(
                    "Kafka unavailable",
                    extra={"error": repr(err), "retry_in_s": delay} | ONE_LINE_EACH,
                )
                await self._stop_producer(producer)
                if await wait_or_stop(stop, delay):
                    return None
                delay = min(delay * 2, self._cfg.reconnect_max_s)
                continue
            log.info("Kafka producer started", extra={"bootstrap": self._kafka_servers})
            return producer
        return None

    @staticmethod
    async def _stop_producer(producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), _PRODUCER_STOP_TIMEOUT_S)
        except (TimeoutError, KafkaError) as err:
            log.warning("Kafka producer did not stop cleanly", extra={"error": repr(err)})


async def _first_set(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def _until_set(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait until ``wanted`` or ``stop`` is set; True if ``wanted`` was (and not ``stop``)."""
    await _first_set(wanted, stop)
    return wanted.is_set() and not stop.is_set()


async def _set_when(target: asyncio.Event, *events: asyncio.Event) -> None:
    """Set ``target`` as soon as any of ``events`` is set."""
    await _first_set(*events)
    target.set()
