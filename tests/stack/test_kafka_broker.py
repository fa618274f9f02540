"""The local Kafka: kotaflow's topics exist as planned, and an idempotent produce is consumed
and committed by hand (the pattern every stage uses: write, then commit offset + 1)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.local.kafka_topics import describe_cluster, ensure_topics, plain_options, planned_topics
from deploy.local.service import ServiceError
from ingest.sizes import SizeLimits
from kotaflow.kafka import topic_max_message_bytes
from kotaflow.settings import Settings
from tests.support.isolated_kafka import delete_topics

log = logging.getLogger(__name__)
DEADLINE_S = 60.0
MESSAGES = 60
DEVICES = 7


@pytest.mark.services
def test_kotaflow_topics_exist_with_planned_partitions(stack: Settings) -> None:
    view = describe_cluster(stack.kafka)
    assert view is not None
    for topic, partitions in planned_topics(stack.kafka).items():
        assert view.partitions.get(topic) == partitions, topic


@pytest.mark.services
@pytest.mark.asyncio
async def test_idempotent_produce_then_consume_and_commit_by_hand(stack: Settings) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    topic = f"kotaflow.test.{uuid.uuid4().hex}"
    ensure_topics(stack.kafka, {topic: 3}, log.info)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            sent = [
                await producer.send(topic, key=f"dev-{i % DEVICES}".encode(), value=str(i).encode())
                for i in range(MESSAGES)
            ]
            acked = await asyncio.gather(*sent)  # acks=all, forced by idempotence
        finally:
            await producer.stop()
        assert len(acked) == MESSAGES

        group = f"test-{uuid.uuid4().hex[:8]}"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            records = await _take(consumer, MESSAGES)
            assert sorted(int(r.value) for r in records) == list(range(MESSAGES))
            partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
            for r in records:
                partitions_of_key[r.key].add(r.partition)
            assert all(len(p) == 1 for p in partitions_of_key.values())  # keyed: one partition

            next_offsets: dict[TopicPartition, int] = {}
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                next_offsets[tp] = max(next_offsets.get(tp, 0), r.offset + 1)
            await consumer.commit(next_offsets)
            for tp, offset in next_offsets.items():
                assert await consumer.committed(tp) == offset
        finally:
            await consumer.stop()
    finally:
        await delete_topics(stack, [topic])


async def _take(consumer: AIOKafkaConsumer, count: int) -> list[object]:
    got: list[object] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < count and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500, max_records=count)
        for records in batch.values():
            got.extend(records)
    return got


@pytest.mark.services
@pytest.mark.asyncio
async def test_bridge_topics_get_the_size_limit_and_a_smaller_one_is_refused(
    stack: Settings,
) -> None:
    """``stack up``'s topic step: the raw and dead-letter topics are created with the
    ``max.message.bytes`` that follows from ``bridge.max_payload_bytes``; an existing one
    that takes less stops it with both values named (ingest/sizes.py)."""
    rid = uuid.uuid4().hex[:8]
    topics = stack.kafka.topics.model_copy(
        update={"raw": f"kotaflow.test.raw.{rid}", "deadletter": f"kotaflow.test.dead.{rid}"}
    )
    kafka = stack.kafka.model_copy(update={"topics": topics})
    big = SizeLimits.of(stack.bridge.model_copy(update={"max_payload_bytes": 2_000_000}))
    try:
        ensure_topics(kafka, {topics.raw: 1, topics.deadletter: 1}, log.info, limits=big)
        found = await topic_max_message_bytes(plain_options(kafka), [topics.raw, topics.deadletter])
        assert found == {
            topics.raw: big.topic_message_bytes,
            topics.deadletter: big.topic_message_bytes,
        }
        bigger = SizeLimits.of(stack.bridge.model_copy(update={"max_payload_bytes": 4_000_000}))
        with pytest.raises(ServiceError) as err:
            ensure_topics(kafka, {topics.raw: 1, topics.deadletter: 1}, log.info, limits=bigger)
        assert f"{topics.raw} max.message.bytes={big.topic_message_bytes}" in str(err.value)
        assert f"needs {bigger.request_bytes}" in str(err.value)
    finally:
        await delete_topics(stack, [topics.raw, topics.deadletter])
