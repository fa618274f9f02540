"""The alerting stage: ``kotaflow.readings`` in, state and outbox rows out (one SQLite
transaction per batch), offsets committed by :class:`processors.runtime.stage_loop.StageLoop`
afterwards.

It plugs into the same consume-process-write-commit loop as the other processors: ``handle``
feeds readings to the engine; ``flush`` (after every poll) runs the wall-clock tick when due
and saves the state changes together with the messages they cause, then returns the offsets
they cover. On assignment it loads the saved state of the new partitions; on revocation it
forgets them (their state is already saved). A record that is not a readings record (v2, or
v1 still read: ``kotaflow.wire.readings``) is dead-lettered (through the outbox, so it is not
lost either) and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka.structs import OffsetAndMetadata, TopicPartition

from kotaflow.settings import Settings, StageConsumer
from kotaflow.wire.alerts import AlertEvent
from kotaflow.wire.deadletter import DeadLetter
from processors.alerting.engine import Engine
from processors.alerting.metrics import AlertMetrics
from processors.alerting.routing import escalations, route
from processors.alerting.state_store import DEADLETTER_DESTINATION, AlertStore, Outgoing
from processors.runtime.readings_input import parse_readings
from processors.runtime.stage_loop import Batch, Offsets

log = logging.getLogger("kotaflow.alerting.stage")


class AlertStage:
    name = "alert"

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: AlertStore,
        queued: Callable[[], None],
        clock: Callable[[], float] = time.time,
        metrics: AlertMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._cfg = settings.alerting
        self._engine = engine
        self._store = store
        self._queued = queued
        self._clock = clock
        self._metrics = metrics or AlertMetrics()
        self._offsets: dict[TopicPartition, int] = {}
        self._events: list[AlertEvent] = []
        self._dead: list[Outgoing] = []
        self._last_tick_ms = 0
        self.owned: set[int] = set()
        """Partitions assigned to this process (its dispatcher delivers only their messages)."""
        self.ready = asyncio.Event()
        """Set once partitions are assigned and their state loaded (tests wait on it)."""

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def input_topic(self) -> str:
        return self._settings.kafka.topics.readings

    @property
    def consumer_settings(self) -> StageConsumer:
        return StageConsumer(
            group_id=self._cfg.group_id,
            max_records=self._cfg.max_records,
            poll_timeout_ms=self._cfg.poll_timeout_ms,
        )

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self._engine.load(*self._store.load(numbers))
        self.owned |= numbers
        log.info("partitions assigned", extra={"partitions": sorted(numbers)})
        self.ready.set()

    def revoked(self, partitions: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self._engine.forget(numbers)
        self.owned -= numbers

    async def handle(self, batch: Batch) -> None:
        now_ms = self._now_ms()
        silences = self._store.silences()
        for tp, records in batch.items():
            for record in records:
                readings, letters = parse_readings(record, self.name)
                for letter in letters:
                    self._dead.append(_queued(letter, tp, record.offset))
                for reading in readings:
                    self._events += self._engine.apply(reading, tp.partition, now_ms, silences)
            if records:
                self._offsets[tp] = records[-1].offset + 1

    def caught_up(self, partitions: set[TopicPartition]) -> None:
        self._engine.caught_up = {tp.partition for tp in partitions}

    def due(self) -> bool:
        return True  # state is saved after every poll: alerts must not wait for a batch

    async def flush(self, force: bool = False) -> Offsets:
        now_ms = self._now_ms()
        escalated: list[Outgoing] = []
        if now_ms - self._last_tick_ms >= self._cfg.tick_s * 1000:
            self._last_tick_ms = now_ms
            silences, acks = self._store.silences(), self._store.acks()
            self._events += self._engine.tick(now_ms, silences, acks)
            unacked = self._engine.unacknowledged(now_ms, silences, acks)
            escalated = escalations(unacked, self._cfg, now_ms)
            self._metrics.outbox(self._store.pending(), now_ms)
        dirty = self._engine.take_dirty()
        outgoing = route(self._events, self._cfg, now_ms) + escalated + self._dead
        self._dead = []
        self._metrics.events(self._events)
        if dirty.devices or dirty.series or dirty.states or outgoing:
            devices = (
                set(dirty.devices) | {d for d, _ in dirty.series} | {d for _, d in dirty.states}
            )
            partition_of = {d: self._engine.partition_of(d) for d in devices}
            if self._store.save(dirty, partition_of, outgoing, now_ms):
                self._queued()
        for event in self._events:
            log.info(
                "alert",
                extra={
                    "id": event.id,
                    "change": event.change.value,
                    "alert_level": event.level,  # "level" is the log record's own
                    "device": event.device,
                    "notify": event.notify,
                    "silenced_by": event.silenced_by,
                },
            )
        self._events.clear()
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in self._offsets.items()}
        self._offsets.clear()
        return offsets

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _queued(letter: DeadLetter, tp: TopicPartition, offset: int) -> Outgoing:
    """The dead letter as an outbox row for ``kotaflow.deadletter`` (lost in no crash)."""
    log.error(
        "record dead-lettered",
        extra={"partition": tp.partition, "offset": offset, "reason": letter.reason.value},
    )
    payload = {"key": letter.device, "value": letter.value().decode()}
    event_id = f"{tp.topic}/{tp.partition}/{offset}"
    return Outgoing(DEADLETTER_DESTINATION, event_id, payload, tp.partition)
