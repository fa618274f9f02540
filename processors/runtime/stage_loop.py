"""The consume-process-write-commit loop every stage runs in (one asyncio task per stage).

A stage implements :class:`Stage`; this loop owns the Kafka consumer and the commit rule:

1. ``getmany(max_records=N)`` (never under the lock, see below);
2. ``stage.handle(batch)`` buffers or writes output for the records;
3. when ``stage.due()``: ``offsets = await stage.flush()`` writes everything buffered and
   returns, per partition, the offset that its *succeeded* output covers; only then
   ``consumer.commit(offsets)``.

On a rebalance the listener takes the same lock, flushes and commits the partitions being
revoked and lets the stage drop their state; newly assigned partitions are announced to the
stage (aggregate restores its watermark from the commit metadata there). Records that were
fetched for a partition we no longer own are skipped. ``getmany`` is never called with the
lock held, so the rebalance (which runs while ``getmany`` waits) cannot deadlock with it.

A commit that fails because the group rebalanced is logged and dropped: the new owner
re-reads from the last commit, which is the at-least-once half of every stage's guarantee.

Kafka unreachable at start (a broker restarting, the stack still coming up) is not an
error: the stage's clients are made afresh and started again with backoff
(:data:`START_BACKOFF`), one warning line per attempt, until they connect or the stage is
told to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Awaitable, Mapping
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from kotaflow.logs import ONE_LINE_EACH
from kotaflow.settings import Settings, StageConsumer
from kotaflow.waiting import wait_or_stop
from processors.runtime.clients import REAL_CLIENTS, StageClients
from processors.runtime.health import Health
from processors.runtime.retry import Backoff

log = logging.getLogger("kotaflow.processors.loop")

Batch = Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
Offsets = dict[TopicPartition, OffsetAndMetadata]


class Stage(Protocol):
    name: str

    @property
    def input_topic(self) -> str: ...

    @property
    def consumer_settings(self) -> StageConsumer: ...

    async def start(self) -> None:
        """Open output clients (called inside the loop)."""

    async def stop(self) -> None:
        """Close output clients (after the final flush and commit)."""

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """These partitions are now ours; consumption starts at their committed offsets."""

    def revoked(self, partitions: set[TopicPartition]) -> None:
        """Forget these partitions (already flushed and committed)."""

    async def handle(self, batch: Batch) -> None:
        """Process consumed records; may write output, must not commit."""

    def caught_up(self, partitions: set[TopicPartition]) -> None:
        """These partitions have nothing more to read right now (called every poll)."""

    def due(self) -> bool:
        """Whether it is time to flush (buffer full or flush interval passed)."""

    async def flush(self, force: bool = False) -> Offsets:
        """Write buffered output; return offsets covered by output that succeeded.

        ``force`` (shutdown, rebalance): write everything and commit what may be committed.
        """


START_BACKOFF = Backoff(initial_s=1.0, max_s=10.0, multiplier=2.0, jitter=0.1)
"""Between attempts to reach Kafka at start: 1, 2, 4, 8, then every 10 s."""


async def _quietly(closing: Awaitable[None]) -> None:
    try:
        await closing
    except (KafkaError, OSError) as err:
        log.debug("closing after a failed start", extra={"error": repr(err)})


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: StageLoop) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.on_assigned(set(assigned))


class StageLoop:
    """Runs one stage until ``stop`` is set, then flushes, commits and closes."""

    def __init__(
        self,
        stage: Stage,
        settings: Settings,
        health: Health,
        clients: StageClients = REAL_CLIENTS,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.health = health
        self._lock = asyncio.Lock()
        self._clients = clients
        self._consumer = self._new_consumer()
        self.owned: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}

    def _new_consumer(self) -> AIOKafkaConsumer:
        name = f"kotaflow-{self.stage.name}-{instance_name()}"
        return self._clients.consumer(self.settings, self.stage.consumer_settings, name)

    async def _start(self, stop: asyncio.Event) -> bool:
        """Start the stage's clients and the consumer, retrying while Kafka is unreachable;
        False if told to stop first (then nothing is left open)."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.stage.start()
                self._consumer.subscribe([self.stage.input_topic], listener=_Listener(self))
                await self._consumer.start()
                return True
            except (KafkaError, OSError) as err:
                await _quietly(self._consumer.stop())  # a half-started client must not leak
                await _quietly(self.stage.stop())
                attempt += 1
                delay = START_BACKOFF.delay(attempt, rand=random.random())
                log.warning(
                    "Kafka unreachable at %s, stage %s not started yet: retrying in %.0f s",
                    self.settings.kafka.bootstrap_servers,
                    self.stage.name,
                    delay,
                    extra={"stage": self.stage.name, "attempt": attempt, "error": repr(err)}
                    | ONE_LINE_EACH,
                )
                self._consumer = self._new_consumer()
                await wait_or_stop(stop, delay)
        await _quietly(self._consumer.stop())
        return False

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.stage.consumer_settings
        if not await self._start(stop):
            return
        log.info("stage started", extra={"stage": self.stage.name, "group": cfg.group_id})
        try:
            while not stop.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_records
                )
                async with self._lock:
                    mine = {tp: recs for tp, recs in batch.items() if tp in self.owned}
                    if mine:
                        self.health.records_in(self.stage.name, sum(len(r) for r in mine.values()))
                        await self.stage.handle(mine)
                        self._track(mine)
                    self._progress()
                    if self.stage.due():
                        await self._commit(await self.stage.flush())
            async with self._lock:
                await self._commit(await self.stage.flush(force=True))
        finally:
            await self._consumer.stop()
            await self.stage.stop()
            log.info("stage stopped", extra={"stage": self.stage.name})

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            try:
                await self._commit(await self.stage.flush(force=True))
            finally:
                self.stage.revoked(revoked)
                for tp in revoked:
                    self.health.forget_partition(self.stage.name, tp.partition)
                self.owned -= revoked
                for tp in revoked:
                    self._position.pop(tp, None)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            self.owned |= assigned
            await self.stage.assigned(assigned)

    async def _commit(self, offsets: Offsets) -> None:
        mine = {tp: om for tp, om in offsets.items() if tp in self.owned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as err:
            log.warning(
                "commit lost to a rebalance", extra={"stage": self.stage.name, "err": str(err)}
            )
        except KafkaError as err:
            log.error("commit failed", extra={"stage": self.stage.name, "err": repr(err)})

    def _track(self, batch: Batch) -> None:
        for tp, records in batch.items():
            if records:
                self._position[tp] = records[-1].offset + 1

    def _progress(self) -> None:
        """Report lag per partition and tell the stage which partitions are caught up."""
        idle: set[TopicPartition] = set()
        for tp in self.owned:
            high = self._consumer.highwater(tp)
            position = self._position.get(tp)
            if high is None or position is None:
                continue
            behind = max(0, high - position)
            self.health.lag(self.stage.name, tp.partition, behind)
            if behind == 0:
                idle.add(tp)
        self.stage.caught_up(idle)
