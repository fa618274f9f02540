"""The MQTT -> Kafka bridge: every device message lands in the raw topic, nothing is lost.

Guarantee: at-least-once from the broker to Kafka. A message is acked to the broker only
after Kafka acknowledged its record (idempotent producer, ``acks=all``), and acks follow the
order of arrival (:mod:`ingest.acks`). Whatever is not acked stays in our persistent MQTT
session and is redelivered, so a crash or a Kafka outage costs duplicates, never messages.
Duplicates are counted (``redelivered``) and are harmless downstream (InfluxDB points with
the device's timestamp overwrite themselves).

Flow, in one asyncio task (the *pump*): paho's network thread appends to the inbox
(:mod:`ingest.mqtt`); the pump classifies each message at the edge (:mod:`ingest.edge`:
raw envelope, or a dead letter for oversize / unknown topic / rate limited) and appends the
record to its partition's batch (:mod:`ingest.batcher`). When Kafka acknowledges a batch,
its deliveries complete in the ack window and the contiguous completed prefix is acked.

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

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from devices.reading import Reason
from ingest.acks import AckWindow, Delivery
from ingest.batcher import KafkaBatcher
from ingest.edge import EdgePolicy, Inbound
from ingest.envelope import RawEnvelope
from ingest.metrics import BridgeMetrics
from ingest.mqtt import MqttIntake
from ingest.producer import make_bridge_producer
from ingest.ratelimit import DeviceRateLimiter
from kotaflow.kafka import client_options
from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings

log = logging.getLogger("kotaflow.bridge")

_PRODUCER_STOP_TIMEOUT_S = 10.0
_DRAIN_POLL_S = 0.02
_YIELD_EVERY = 256


class _Outcome(enum.Enum):
    STOPPED = "stopped"
    KAFKA_FAILED = "kafka_failed"


_Item = tuple[Delivery, Reason | None]
"""What the batcher carries per record: the MQTT delivery, and the dead-letter reason."""


@dataclass(eq=False)
class _Session:
    """One MQTT connection's worth of state, thrown away whole on Kafka failure."""

    producer: AIOKafkaProducer
    intake: MqttIntake
    wake: asyncio.Event
    window: AckWindow = field(default_factory=AckWindow)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    batcher: KafkaBatcher[_Item] = field(init=False)


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
        intake.start()
        pump = asyncio.create_task(self._pump(session), name="bridge-pump")
        stopping = asyncio.create_task(stop.wait())
        failing = asyncio.create_task(session.failed.wait())
        try:
            await asyncio.wait({pump, stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() and not session.failed.is_set():
                await self._drain(session)
                outcome = _Outcome.STOPPED
            else:
                if pump.done() and not pump.cancelled() and pump.exception() is not None:
                    self._fail(session, pump.exception())
                outcome = _Outcome.KAFKA_FAILED
        finally:
            for task in (pump, stopping, failing):
                task.cancel()
            await asyncio.gather(pump, stopping, failing, return_exceptions=True)
            await session.batcher.close()
            abandoned = len(session.window) + len(intake.inbox)
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
            taken = 0
            while inbox and not s.failed.is_set():
                await self._forward(s, *inbox.popleft())
                taken += 1
                if taken % _YIELD_EVERY == 0:
                    # Let the batch senders and Kafka callbacks run: without this a steady
                    # inbox starves them, batches leave only when full and acks stall.
                    self.metrics.received.inc(_YIELD_EVERY)
                    await asyncio.sleep(0)
            self.metrics.received.inc(taken % _YIELD_EVERY)

    async def _forward(
        self,
        s: _Session,
        generation: int,
        mid: int,
        qos: int,
        dup: bool,
        received_at: float,
        msg: Inbound,
    ) -> None:
        if dup:
            self.metrics.redelivered.inc()
        window = s.window
        if generation != window.generation:
            self._abandon(s, window.reset(generation))
        delivery = window.open(generation, mid, qos, received_at)
        edge = self._edge
        decision = edge.classify(msg, time.time_ns() // 1_000_000, time.monotonic())
        try:
            if isinstance(decision, RawEnvelope):
                await s.batcher.add(
                    self._raw_topic,
                    decision.key(),
                    decision.payload,
                    edge.record_headers(decision),
                    (delivery, None),
                )
            else:
                await s.batcher.add(
                    self._dead_topic,
                    decision.key(),
                    decision.value(),
                    [],
                    (delivery, decision.reason),
                )
        except KafkaError as err:
            self._fail(s, err)

    def _on_batch(self, s: _Session, items: list[_Item], err: BaseException | None) -> None:
        """Kafka answered for one batch: count it, then ack what is now a completed prefix."""
        if err is not None:
            self._fail(s, err)
            return
        raw = 0
        for _, reason in items:
            if reason is None:
                raw += 1
            else:
                self.metrics.deadlettered_for(reason).inc()
        self.metrics.produced.inc(raw)
        if s.failed.is_set():
            return  # recovering: ack nothing more, the broker will redeliver
        window = s.window
        ready: list[Delivery] = []
        for delivery, _ in items:
            ready += window.complete(delivery)
        if ready:
            s.intake.ack([(d.mid, d.qos) for d in ready])
            # One observation per ack burst, of its oldest message (the burst's worst case):
            # a histogram observation per message was 7% of the bridge's CPU.
            self.metrics.ack_latency.observe(time.monotonic() - ready[0].received_at)
            self.metrics.acked.inc(len(ready))
            s.intake.release(len(ready))

    def _abandon(self, s: _Session, dropped: list[Delivery]) -> None:
        """A reconnect superseded these: the broker redelivers them, free their slots."""
        if dropped:
            self.metrics.dropped_unacked.inc(len(dropped))
            s.intake.release(len(dropped))

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
        log.info("draining", extra={"in_flight": len(s.window) + len(s.intake.inbox)})
        while (s.intake.inbox or len(s.window)) and not s.failed.is_set():
            if time.monotonic() >= deadline:
                log.warning("drain timed out", extra={"in_flight": len(s.window)})
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
                log.warning("Kafka unavailable", extra={"error": repr(err), "retry_in_s": delay})
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
