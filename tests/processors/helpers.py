"""Shared test helpers: build raw envelopes, produce them, read topics back, run stages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from devices.topics import device_topic
from kotaflow.settings import Settings
from kotaflow.wire.raw import DeviceKeyKind, Headers, PayloadFormat, RawEnvelope
from processors.runner import StageName, run_stages
from processors.runtime.health import Health
from tests.support.isolated_kafka import produce_all
from tests.support.polling import wait_for as wait_for  # the processor tests' import

Raw = tuple[bytes, bytes | None, Headers]
"""(key, value, headers) of one record on the raw topic."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def native(device: str, values: dict[str, Any], ts_ms: int | None, rx_ms: int) -> Raw:
    payload: Any = values if ts_ms is None else {"ts": ts_ms, "values": values}
    return envelope(device, json.dumps(payload).encode(), rx_ms)


def envelope(device: str, payload: bytes, rx_ms: int, topic: str | None = None) -> Raw:
    env = RawEnvelope(
        payload=payload,
        mqtt_topic=topic or device_topic(PayloadFormat.NATIVE_JSON, device),
        device_key=device,
        key_kind=DeviceKeyKind.DEVICE_ID,
        format=PayloadFormat.NATIVE_JSON,
        rx_ms=rx_ms,
    )
    return env.key(), env.payload, env.headers()


async def produce(settings: Settings, topic: str, records: Sequence[Raw]) -> None:
    await produce_all(settings, topic, records)


@contextlib.asynccontextmanager
async def _reader(settings: Settings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer assigned every partition of ``topic``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        yield consumer
    finally:
        await consumer.stop()


async def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 60.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the start, polled until ``until(records)`` or deadline."""
    async with _reader(settings, topic) as consumer:
        await consumer.seek_to_beginning()
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for recs in batch.values():
                records.extend(recs)
        return records


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    async with _reader(settings, topic) as consumer:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        return {tp.partition: o for tp, o in ends.items()}


async def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        return {tp.partition: om.offset for tp, om in found.items() if tp.topic == topic}
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def running(settings: Settings, *stages: StageName) -> AsyncIterator[Health]:
    """The given stages running in this loop; stopped (flush, commit) on exit."""
    stop = asyncio.Event()
    health = Health("test")
    task = asyncio.create_task(run_stages(settings, list(stages), stop, health, signals=False))
    try:
        yield health
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
