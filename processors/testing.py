"""Helpers for tests and benchmarks of the processors (no test framework needed).

:func:`isolated` gives settings whose topics and consumer groups nobody else uses, so a
test or benchmark can run on the shared local stack beside everything else, and
:func:`stage_topics` creates or deletes those topics; :func:`produce_all` writes records and
waits until Kafka acknowledged every one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kotaflow.settings import Settings

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""(key, value, headers) of one Kafka record."""


def isolated(settings: Settings, tag: str, prefix: str = "test") -> Settings:
    """``settings`` with topics ``<prefix>.<tag>.{raw,readings,deadletter}`` and consumer
    groups ``<prefix>-<tag>-<stage>``."""
    topics = settings.kafka.topics.model_copy(
        update={n: f"{prefix}.{tag}.{n}" for n in ("raw", "readings", "deadletter")}
    )
    p = settings.processing
    processing = p.model_copy(
        update={
            name: getattr(p, name).model_copy(update={"group_id": f"{prefix}-{tag}-{stage}"})
            for name, stage in (
                ("validation", "validate"),
                ("store", "store"),
                ("aggregate", "aggregate"),
            )
        }
    )
    kafka = settings.kafka.model_copy(update={"topics": topics})
    return settings.model_copy(update={"kafka": kafka, "processing": processing})


async def stage_topics(settings: Settings, *, create: bool, partitions: int = 4) -> None:
    """Create (or delete) the raw, readings and dead-letter topics of ``settings``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        t = settings.kafka.topics
        names = [t.raw, t.readings, t.deadletter]
        if create:
            await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        else:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def produce_all(settings: Settings, topic: str, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_idempotence=True,
        linger_ms=50,
        max_batch_size=1_048_576,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
