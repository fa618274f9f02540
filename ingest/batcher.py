"""Record batches per partition with one Kafka future per batch, not per record.

Profiling showed ``AIOKafkaProducer.send`` and the per-record futures it resolves (one
``RecordMetadata`` and one callback per record) as half of the bridge's asyncio-side CPU.
This batcher appends records straight into aiokafka's ``BatchBuilder`` (C code) and submits
whole batches with ``send_batch``; the producer still assigns idempotent sequence numbers,
retries, and keeps one batch in flight per partition.

Per partition there is one *open* batch (the pump appends to it) and one sender task that
submits it. While the previous batch is in flight, ``send_batch`` waits and records keep
accumulating, so batches grow with load (natural batching); ``linger_s`` adds a short wait
for a batch that is not full yet. A full batch makes :meth:`KafkaBatcher.add` wait until its
sender has taken it: bounded memory, backpressure to the pump.

``on_done(items, error)`` runs once per batch, with the items in append order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from ingest.producer import CachedPartitioner

T = TypeVar("T")

Headers = list[tuple[str, bytes]]
"""aiokafka's C batch builder takes a list, nothing else."""


@dataclass(eq=False)
class _Open(Generic[T]):
    builder: Any
    items: list[T] = field(default_factory=list)


class _Partition(Generic[T]):
    """The open batch of one topic-partition and the task that submits it."""

    def __init__(self, batcher: KafkaBatcher[T], topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._batcher = batcher
        self.open: _Open[T] = _Open(batcher.producer.create_batch())
        self.has_data = asyncio.Event()
        self.taken = asyncio.Event()  # set whenever the sender swaps in a fresh batch
        self.full = asyncio.Event()
        self.task = asyncio.create_task(self._send_loop(), name=f"batcher-{topic}-{partition}")

    async def _send_loop(self) -> None:
        batcher = self._batcher
        while True:
            await self.has_data.wait()
            if batcher.linger_s > 0 and not self.full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.full.wait(), batcher.linger_s)
            batch, self.open = self.open, _Open(batcher.producer.create_batch())
            self.has_data.clear()
            self.full.clear()
            self.taken.set()
            batch.builder.close()
            try:
                fut = await batcher.producer.send_batch(
                    batch.builder, self.topic, partition=self.partition
                )
            except KafkaError as err:
                batcher.on_done(batch.items, err)
                continue
            fut.add_done_callback(
                lambda f, items=batch.items: batcher.on_done(
                    items, None if f.cancelled() else f.exception()
                )
            )


class KafkaBatcher(Generic[T]):
    """Appends records per partition; one ``on_done`` per batch Kafka acknowledged."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        on_done: Callable[[list[T], BaseException | None], None],
        linger_s: float,
    ) -> None:
        self.producer = producer
        self.on_done = on_done
        self.linger_s = linger_s
        self._partitioner = CachedPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[tuple[str, int], _Partition[T]] = {}

    async def add(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers, item: T
    ) -> None:
        """Append one record; waits only when that partition's open batch is full."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        p = self._partitioner(key, partitions, partitions)
        part = self._open.get((topic, p))
        if part is None:
            part = self._open[(topic, p)] = _Partition(self, topic, p)
        while True:
            current = part.open
            if current.builder.append(timestamp=None, key=key, value=value, headers=headers):
                current.items.append(item)
                part.has_data.set()
                return
            if not current.items:  # an empty batch refused it: it can never fit
                raise MessageSizeTooLargeError(f"record of {len(value)} bytes exceeds a batch")
            part.full.set()
            part.taken.clear()
            await part.taken.wait()

    def in_open_batches(self) -> int:
        return sum(len(p.open.items) for p in self._open.values())

    async def close(self) -> None:
        """Stop the sender tasks (what was submitted stays with the producer)."""
        tasks = [p.task for p in self._open.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._open.clear()
