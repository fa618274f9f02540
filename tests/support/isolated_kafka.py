"""Helpers for tests and benchmarks of the processors (no test framework needed).

:func:`isolated` gives settings whose topics and consumer groups nobody else uses, so a
test or benchmark can run on the shared local stack beside everything else, and
:func:`stage_topics` creates or deletes those topics; :func:`produce_all` writes records and
waits until Kafka acknowledged every one.

Whatever creates a uniquely named topic (``isolated`` names, a test's own topic, or one
Kafka auto-creates on the first produce) deletes it at teardown with :func:`delete_topics`:
the local Kafka keeps every topic it ever had, and each one makes its start slower.
The InfluxDB side is :mod:`tests.support.scratch_influx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kotaflow.kafka import client_options
from kotaflow.settings import Settings

log = logging.getLogger("kotaflow.testing")

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""(key, value, headers) of one Kafka record."""

UNKNOWN_TOPIC_OR_PARTITION = 3
"""Kafka's error code for deleting a topic that does not exist (never made, or gone)."""
DELETE_TIMEOUT_S = 30.0


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


def isolation_env(settings: Settings) -> dict[str, str]:
    """The topics, consumer groups and InfluxDB buckets of ``settings`` as ``KOTAFLOW_*``
    variables, for the ``kotaflow`` child processes of a test or benchmark (no secrets:
    the caller hands over a token its own way)."""
    t, p, influx = settings.kafka.topics, settings.processing, settings.influxdb
    return {
        "KOTAFLOW_KAFKA__TOPICS__RAW": t.raw,
        "KOTAFLOW_KAFKA__TOPICS__READINGS": t.readings,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": t.deadletter,
        "KOTAFLOW_KAFKA__TOPICS__ALERTS": t.alerts,
        "KOTAFLOW_PROCESSING__VALIDATION__GROUP_ID": p.validation.group_id,
        "KOTAFLOW_PROCESSING__STORE__GROUP_ID": p.store.group_id,
        "KOTAFLOW_PROCESSING__AGGREGATE__GROUP_ID": p.aggregate.group_id,
        "KOTAFLOW_ALERTING__GROUP_ID": settings.alerting.group_id,
        "KOTAFLOW_INFLUXDB__TELEMETRY_BUCKET": influx.telemetry_bucket,
        "KOTAFLOW_INFLUXDB__ROLLUPS_BUCKET": influx.rollups_bucket,
    }


async def stage_topics(settings: Settings, *, create: bool, partitions: int = 4) -> None:
    """Create (or delete, as :func:`delete_topics` does) the raw, readings and dead-letter
    topics of ``settings``."""
    t = settings.kafka.topics
    names = [t.raw, t.readings, t.deadletter]
    if not create:
        await delete_topics(settings, names)
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def delete_topics(
    settings: Settings, names: Iterable[str], timeout_s: float = DELETE_TIMEOUT_S
) -> bool:
    """Delete a test's or benchmark's own topics at teardown; whether all are gone.

    Never raises, so a clean-up cannot hide the outcome it follows: an unreachable broker or
    a refused deletion is logged as a warning (and gives False); a topic that does not exist
    counts as deleted."""
    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        return True
    admin = AIOKafkaAdminClient(
        **client_options(settings),
        client_id="kotaflow-testing",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            response = await admin.delete_topics(wanted)
    except Exception as err:  # a clean-up reports, never raises
        log.warning("could not delete Kafka topics %s: %r", ", ".join(wanted), err)
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    refused = [
        f"{topic} (error {code})"
        for topic, code in response.topic_error_codes
        if code not in (0, UNKNOWN_TOPIC_OR_PARTITION)
    ]
    if refused:
        log.warning("Kafka did not delete topics: %s", ", ".join(refused))
    return not refused


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
