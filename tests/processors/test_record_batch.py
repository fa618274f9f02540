"""``append_record`` behaves as aiokafka's public ``BatchBuilder.append`` (it bypasses the
wrapper for speed and reads three of its private fields: this pins them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.record.memory_records import MemoryRecords

from processors.runtime.kafka_clients import append_record

RECORDS = [(f"dev-{i % 3}".encode(), b'{"value":%d}' % i, 1_764_300_000_000 + i) for i in range(50)]


pytestmark = pytest.mark.asyncio


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


async def test_same_records_as_the_public_append(producer: AIOKafkaProducer) -> None:
    ours, theirs = producer.create_batch(), producer.create_batch()
    for key, value, ts in RECORDS:
        assert append_record(ours, key, value, ts)
        assert theirs.append(key=key, value=value, timestamp=ts) is not None
    assert ours.record_count() == theirs.record_count() == len(RECORDS)
    assert _decoded(ours) == _decoded(theirs)
    assert [(k, v) for _, _, k, v in _decoded(ours)] == [(k, v) for k, v, _ in RECORDS]


async def test_a_full_batch_closes_so_no_later_record_jumps_the_queue(
    producer: AIOKafkaProducer,
) -> None:
    batch = producer.create_batch()
    appended = 0
    while append_record(batch, b"k", b"x" * 1000, 1):
        appended += 1
    assert batch.closed()
    assert not append_record(batch, b"k", b"", 1)  # would fit, but comes after the refused one
    assert batch.record_count() == appended
