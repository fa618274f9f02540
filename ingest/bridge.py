"""The MQTT -> Kafka bridge: every device message lands in the raw topic, nothing is lost.

Guarantee: at-least-once from the broker to Kafka. A message is acked to the broker only
after Kafka acknowledged its record (idempotent producer, ``acks=all``), and acks follow the
order of arrival (:mod:`ingest.acks`). Whatever is not acked stays in our persistent MQTT
session and is redelivered, so a crash or a Kafka outage costs duplicates, never messages.
Duplicates are counted (``redelivered``) and are harmless downstream (InfluxDB points with
the device's timestamp overwrite themselves).

Flow, in one asyncio task (the *pump*): paho's network thread appends bursts of messages
to the inbox (:mod:`ingest.mqtt`, :mod:`ingest.fastpaho`); the pump routes each message at
the edge (:mod:`ingest.edge`: raw record, or a dead letter for oversize / unknown topic /
rate limited) and appends the record to its partition's open batch (:mod:`ingest.batcher`),
without awaiting per message. When Kafka acknowledges a batch, its QoS 1 deliveries
complete in the ack window (:mod:`ingest.acks`) and the contiguous completed prefix is acked
with one write.

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
- SIGTERM/SIGINT: take no new messages, let the in-flight ones reach Kafka and be acked
  (up to ``drain_timeout_s``), disconnect, flush and stop the producer.
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

from ingest.acks import AckWindow
from ingest.batcher import KafkaBatcher, Lane
from ingest.edge import EdgePolicy, Route
from ingest.fastpaho import Arrival
from ingest.metrics import BridgeMetrics
from ingest.mqtt import MqttIntake, inbound_of
from ingest.producer import make_bridge_producer
from ingest.ratelimit import DeviceRateLimiter
from kotaflow.kafka import client_options
from kotaflow.logs import ONE_LINE_EACH
from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings
from kotaflow.wire.raw import plain_tails
from kotaflow.wire.reasons import Reason

log = logging.getLogger("kotaflow.bridge")

_PRODUCER_STOP_TIMEOUT_S = 10.0
_DRAIN_POLL_S = 0.02


class _Outcome(enum.Enum):
    STOPPED = "stopped"
    KAFKA_FAILED = "kafka_failed"


_Item = int | tuple[int, Reason]
"""What the batcher carries per record: the delivery's ack-window sequence number (-1 for
QoS 0), with the reason for a dead letter."""


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


class Bridge:
    """Runs until the ``stop`` event passed to :meth:`run` is set."""

    def __init__(self, settings: Settings, metrics: BridgeMetrics | None = None) -> None:
        self._settings = settings
        self._cfg = settings.bridge
        self._raw_topic = settings.kafka.topics.raw
        self._dead_topic = settings.kafka.topics.deadletter
        self.metrics = metrics or BridgeMetrics()
        limiter = (
            DeviceRateLimiter(self._cfg.rate_per_s, self._cfg.rate_burst)
            if self._cfg.rate_per_s is not None
            else None
        )
        self._edge = EdgePolicy(self._cfg.max_payload_bytes, limiter)
        self._kafka_servers = settings.kafka.bootstrap_servers
        # Credentials are resolved now, so a missing one stops the bridge at start.
        self._mqtt = mqtt_access(settings, Account.BRIDGE)
        client_options(settings)

    async def run(self, stop: asyncio.Event) -> None:
        stop_metrics = (
            self.metrics.serve(self._cfg.metrics_port) if self._cfg.metrics_port else None
        )
        log.info(
            "bridge starting",
            extra={
                "client_id": self._cfg.client_id,
                "share_group": self._cfg.share_group,
                "raw_topic": self._raw_topic,
                "metrics_port": self._cfg.metrics_port,
            },
        )
        delay = self._cfg.reconnect_min_s
        try:
            while not stop.is_set():
                producer = await self._start_producer(stop)
                if producer is None:
                    return
                outcome = await self._session(producer, stop)
                if outcome is _Outcome.STOPPED:
                    return
                log.warning("recovering from a Kafka failure", extra={"retry_in_s": delay})
                if await _wait_or_stop(stop, delay):
                    return
                delay = min(delay * 2, self._cfg.reconnect_max_s)
        finally:
            if stop_metrics is not None:
                stop_metrics()
            log.info("bridge stopped")

    # -- one session ------------------------------------------------------------------

    async def _session(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> _Outcome:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        intake = MqttIntake(self._mqtt, self._cfg, loop, wake.set, self.metrics)
        session = _Session(producer, intake, wake)
        session.batcher = KafkaBatcher(
            producer, functools.partial(self._on_batch, session), self._cfg.linger_ms / 1000
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
            abandoned = len(session.window) + sum(len(m) for _, _, m in intake.inbox)
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
                generation, received_at, arrivals = inbox.popleft()
                try:
                    self._forward(s, generation, received_at, arrivals)
                except KafkaError as err:
                    self._fail(s, err)
                    return
                # Between bursts, let the batch senders and Kafka callbacks run: a steady
                # inbox would otherwise starve them, and acks would stall.
                await asyncio.sleep(0)

    def _forward(
        self, s: _Session, generation: int, received_at: float, arrivals: list[Arrival]
    ) -> None:
        """Route one burst of messages into the open batches (no await: the hot path)."""
        window = s.window
        if generation != s.generation:
            s.generation = generation  # a new connection: the broker redelivers the rest
            dropped = window.reset()
            if dropped:
                self.metrics.dropped_unacked.inc(dropped)
        if not arrivals:
            return  # only the news of a new connection
        window.mark_received(received_at)
        rx_ms = time.time_ns() // 1_000_000
        tails = plain_tails(rx_ms)
        route_of = self._edge.route
        lanes = s.lanes
        redelivered = 0
        for arrival in arrivals:
            mid, qos, dup, retain, topic, payload, props = arrival
            redelivered += dup
            seq = window.open(mid) if qos else -1
            route = route_of(topic, len(payload), received_at)
            if type(route) is not Route or retain or props is not None:
                self._forward_other(s, seq, arrival, route, rx_ms)
                continue
            lane = lanes.get(route.key)
            if lane is None:
                lane = lanes[route.key] = s.batcher.lane(self._raw_topic, route.key)
            lane.append(route.key, payload, route.topic_headers + tails[qos], seq, rx_ms)
        self.metrics.received.inc(len(arrivals))
        if redelivered:
            self.metrics.redelivered.inc(redelivered)

    def _forward_other(
        self, s: _Session, seq: int, arrival: Arrival, route: Route | Reason, rx_ms: int
    ) -> None:
        """The long path: dead letters, retained messages, MQTT 5 properties."""
        msg = inbound_of(arrival)
        if isinstance(route, Reason):
            dead = self._edge.dead_letter(msg, route)
            key = dead.key()
            lane = s.batcher.lane(self._dead_topic, key)
            lane.append(key, dead.value(), [], (seq, route), rx_ms)
            return
        envelope = self._edge.envelope(msg, route, rx_ms)
        lane = s.batcher.lane(self._raw_topic, route.key)
        lane.append(route.key, envelope.payload, envelope.headers(route.topic_headers), seq, rx_ms)

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
            for seq, reason in cast(list[tuple[int, Reason]], items):
                seqs.append(seq)
                self.metrics.deadlettered_for(reason).inc()
        if s.failed.is_set():
            return  # recovering: ack nothing more, the broker will redeliver
        pubacks, count, oldest = s.window.complete(seqs)
        if count:
            s.intake.ack(pubacks)
            self.metrics.acked.inc(count)
            if oldest is not None:
                # One observation per ack burst, of its oldest message (the worst case):
                # one per message was 7% of the bridge's CPU.
                self.metrics.ack_latency.observe(time.monotonic() - oldest)

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
                if await _wait_or_stop(stop, delay):
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


async def _wait_or_stop(stop: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds unless ``stop`` is set first; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()
