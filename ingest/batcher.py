"""Record batches per partition with one Kafka future per batch, not per record.

Profiling showed ``AIOKafkaProducer.send`` and the per-record futures it resolves (one
``RecordMetadata`` and one callback per record) as half of the bridge's asyncio-side CPU.
This batcher appends records straight into aiokafka's ``BatchBuilder`` (C code) and submits
whole batches with ``send_batch``; the producer still assigns idempotent sequence numbers,
retries, and keeps one batch in flight per partition.

:meth:`Lane.append` (a lane per topic-partition, from :meth:`KafkaBatcher.lane`) is
synchronous, so the bridge's loop over a burst of messages never stops to await. Per
partition there is one *open* batch that records go into; a full one is closed and queued,
and a new one opened. A sender task per partition submits the
queued batches, then the open one; while the previous batch is in flight ``send_batch``
waits and records keep accumulating, so batches grow with load. ``linger_s`` adds a short
wait for a batch that is not full yet. Memory is bounded by the caller, which holds at most
``max_in_flight`` messages (:class:`ingest.mqtt.MqttIntake`).

``on_done(topic, items, error)`` runs once per batch, with the items in append order.

A record larger than ``max_record_bytes`` (:mod:`ingest.sizes`) is refused at append with
:class:`RecordTooLargeError`, before it is in any batch: the caller dead-letters it compactly
and goes on. (aiokafka's empty batch takes a record of any size, and the broker would then
refuse the whole batch, again on every retry.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kotaflow.kafka_batching import CachedPartitioner, Headers, append_or_roll

T = TypeVar("T")

OnDone = Callable[[str, list[T], BaseException | None], None]


class RecordTooLargeError(ValueError):
    """One record is over the bridge's record limit; nothing was appended."""


def record_size(key: bytes | None, value: bytes, headers: Headers) -> int:
    """An upper bound of a record's size in a batch (bytes plus framing)."""
    size = 32 + len(value) + (len(key) if key else 0)
    for name, data in headers:
        size += 8 + len(name) + len(data)
    return size


class Lane(Generic[T]):
    """One topic-partition: its open batch, the closed ones, and the task sending them.

    ``append`` adds one record to the open batch; a full batch is closed and queued.
    """

    __slots__ = (
        "_batcher",
        "builder",
        "full",
        "has_data",
        "items",
        "partition",
        "ready",
        "task",
        "topic",
    )

    def __init__(self, batcher: KafkaBatcher[T], topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._batcher = batcher
        self.builder: Any = batcher.producer.create_batch()
        self.items: list[T] = []
        self.ready: deque[tuple[Any, list[T]]] = deque()  # closed, in append order
        self.has_data = asyncio.Event()
        self.full = asyncio.Event()
        self.task = asyncio.create_task(self._send_loop(), name=f"batcher-{topic}-{partition}")

    def append(
        self, key: bytes | None, value: bytes, headers: Headers, item: T, timestamp_ms: int
    ) -> None:
        """Add one record (Kafka timestamp ``timestamp_ms``) to the open batch; raises
        :class:`RecordTooLargeError` (nothing appended) for a value over the record limit.

        Only the value is measured here (the hot path); a caller whose headers may be
        large (MQTT 5 user properties) asks :meth:`KafkaBatcher.check` first."""
        if len(value) > self._batcher.max_record_bytes:
            self._batcher.check(key, value, headers)
        fresh = append_or_roll(
            self.builder, self._batcher.producer.create_batch, key, value, timestamp_ms, headers
        )
        if fresh is not None:  # the open batch was full: queue it, the record opened a new one
            self.ready.append((self.builder, self.items))
            self.builder, self.items = fresh, []
            self.full.set()
        self.items.append(item)
        self.has_data.set()

    def _take_open(self) -> tuple[Any, list[T]]:
        taken = (self.builder, self.items)
        self.builder = self._batcher.producer.create_batch()
        self.items = []
        return taken

    async def _send_loop(self) -> None:
        batcher = self._batcher
        producer = batcher.producer
        while True:
            await self.has_data.wait()
            if batcher.linger_s > 0 and not self.full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.full.wait(), batcher.linger_s)
            builder, items = self.ready.popleft() if self.ready else self._take_open()
            if not self.ready:
                self.full.clear()
                if not self.items:
                    self.has_data.clear()
            builder.close()
            try:
                fut = await producer.send_batch(builder, self.topic, partition=self.partition)
            except KafkaError as err:
                batcher.on_done(self.topic, items, err)
                continue
            fut.add_done_callback(
                lambda f, items=items: batcher.on_done(
                    self.topic, items, None if f.cancelled() else f.exception()
                )
            )


class KafkaBatcher(Generic[T]):
    """Appends records per partition; one ``on_done`` per batch Kafka acknowledged."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        on_done: OnDone[T],
        linger_s: float,
        max_record_bytes: int = 1_048_576,
    ) -> None:
        self.producer = producer
        self.on_done = on_done
        self.linger_s = linger_s
        self.max_record_bytes = max_record_bytes
        self._partitioner = CachedPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._lanes: dict[tuple[str, int], Lane[T]] = {}

    def check(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Raise :class:`RecordTooLargeError` if this record would be over the limit."""
        size = record_size(key, value, headers)
        limit = self.max_record_bytes
        if size > limit:
            raise RecordTooLargeError(f"record of {size} bytes > limit {limit} bytes")

    async def prepare(self, *topics: str) -> None:
        """Look the topics' partitions up (append needs them and cannot wait)."""
        for topic in topics:
            if topic not in self._partitions:
                self._partitions[topic] = sorted(await self.producer.partitions_for(topic))

    def lane(self, topic: str, key: bytes | None) -> Lane[T]:
        """Where records with ``key`` go (the bridge keeps it per device: one lookup)."""
        partitions = self._partitions[topic]
        partition = self._partitioner(key, partitions, partitions)
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = Lane(self, topic, partition)
        return lane

    async def close(self) -> None:
        """Stop the sender tasks (what was submitted stays with the producer)."""
        tasks = [lane.task for lane in self._lanes.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
