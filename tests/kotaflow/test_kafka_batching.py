"""``append_or_roll`` and ``CachedPartitioner``: the batching the bridge and validate share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.memory_records import MemoryRecords

from kotaflow.kafka_batching import CachedPartitioner, append_or_roll


@pytest_asyncio.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    made = AIOKafkaProducer(max_batch_size=16_384)  # never started: batches only
    yield made
    await made.stop()


def _decoded(batch: object) -> list[tuple[int, int, bytes | None, bytes | None]]:
    buffer = batch._build()  # type: ignore[attr-defined]
    records = MemoryRecords(bytes(buffer))
    out = []
    while records.has_next():
        for record in records.next_batch():
            out.append((record.offset, record.timestamp, record.key, record.value))
    return out


@pytest.mark.asyncio
async def test_records_that_fit_stay_in_the_batch_in_order(producer: AIOKafkaProducer) -> None:
    batch = producer.create_batch()
    records = [
        (f"dev-{i % 3}".encode(), b'{"value":%d}' % i, 1_764_300_000_000 + i) for i in range(50)
    ]
    for key, value, ts in records:
        assert append_or_roll(batch, producer.create_batch, key, value, ts) is None
    assert _decoded(batch) == [(i, ts, k, v) for i, (k, v, ts) in enumerate(records)]


@pytest.mark.asyncio
async def test_a_full_batch_closes_and_the_record_starts_the_next(
    producer: AIOKafkaProducer,
) -> None:
    batch = producer.create_batch()
    fresh = None
    appended = 0
    while fresh is None:
        fresh = append_or_roll(batch, producer.create_batch, b"k", b"x" * 1000, appended)
        appended += 1
    assert batch.closed()
    assert batch.record_count() == appended - 1
    assert batch.append(timestamp=1, key=b"k", value=b"", headers=[]) is None  # nothing jumps in
    assert [v for _, _, _, v in _decoded(fresh)] == [b"x" * 1000]


def test_cached_partitions_are_kafkas_default() -> None:
    cached, default = CachedPartitioner(max_entries=10), DefaultPartitioner()
    partitions = list(range(6))
    for i in range(100):
        key = f"device-{i}".encode()
        assert cached(key, partitions, partitions) == default(key, partitions, partitions)
        assert cached(key, partitions[:3], partitions[:3]) == default(key, [0, 1, 2], [0, 1, 2])
