"""kotaflow's Kafka topics and the admin calls the local stack makes: metadata and creation.

The partition plan lives here: ``kotaflow.raw`` and ``kotaflow.readings`` carry every reading
and are keyed by device, so they get the most partitions (aiokafka keeps one batch in flight
per partition, and each partition is a unit of consumer parallelism); the dead-letter and
alert topics are low-volume; the bridge's lease topic has exactly one partition (whoever
is assigned it is the active bridge, ingest/lease.py). One node, so one replica each.

Sizes: given the bridge's :class:`~ingest.sizes.SizeLimits`, the topics the bridge writes
(raw, dead letters) are created with the ``max.message.bytes`` that follows from
``bridge.max_payload_bytes``, and existing ones that accept less are refused with an error
naming both values (the bridge checks the same at start).

Creation is idempotent: only missing topics are created, and an existing topic with another
partition count is reported, never changed (that would move devices between partitions).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from deploy.local.service import Report, ServiceError
from ingest.sizes import SizeLimitError, SizeLimits, check_topic_sizes
from kotaflow.kafka import MAX_MESSAGE_BYTES, topic_max_message_bytes
from kotaflow.settings import KafkaSettings

PARTITIONS_BY_ROLE = {"raw": 6, "readings": 6, "deadletter": 3, "alerts": 3, "bridge_lease": 1}
"""Partitions per topic role (a field of ``settings.kafka.topics``)."""
DEFAULT_PARTITIONS = 3
"""For a topic role added to the settings later without an entry above."""
REPLICATION_FACTOR = 1
TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code when a racing caller created the topic first."""

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterView:
    """What one metadata request tells about the cluster."""

    cluster_id: str | None
    brokers: int
    partitions: dict[str, int]


def planned_topics(kafka: KafkaSettings) -> dict[str, int]:
    """Topic name -> partition count for every topic in ``settings.kafka.topics``."""
    return {
        name: PARTITIONS_BY_ROLE.get(role, DEFAULT_PARTITIONS)
        for role, name in kafka.topics.model_dump().items()
    }


def describe_cluster(kafka: KafkaSettings, timeout_s: float = 5.0) -> ClusterView | None:
    """One metadata request; None if the broker does not answer in time."""
    return describe_with(plain_options(kafka), timeout_s)


def describe_with(options: Mapping[str, Any], timeout_s: float = 5.0) -> ClusterView | None:
    """:func:`describe_cluster` with any aiokafka client options (e.g. a SASL login); None
    if the broker does not answer, or refuses the login, in time. A refusal is an answer
    here, not an error: aiokafka's error log of it is held back."""
    connections = logging.getLogger("aiokafka")
    level = connections.level
    connections.setLevel(logging.CRITICAL)
    try:
        return run_sync(_describe(options, timeout_s))
    except (KafkaError, OSError, TimeoutError):
        return None
    finally:
        connections.setLevel(level)


def plain_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Client options for the stack's own calls: the configured listener, no login."""
    return {"bootstrap_servers": kafka.bootstrap_servers, "security_protocol": "PLAINTEXT"}


def ensure_topics(
    kafka: KafkaSettings,
    wanted: Mapping[str, int],
    report: Report,
    options: Mapping[str, Any] | None = None,
    limits: SizeLimits | None = None,
) -> None:
    """Create the missing topics of ``wanted`` (name -> partitions); raise if Kafka refuses.

    ``options``: aiokafka client options, e.g. ``kotaflow.kafka.client_options`` for a SASL_SSL
    login (the compose deployment's topic job); by default the stack's own, :func:`plain_options`.
    ``limits``: the bridge's size limits; its topics get (or must have) the matching
    ``max.message.bytes`` (see the module).
    """
    sized = {kafka.topics.raw, kafka.topics.deadletter} & set(wanted) if limits else set()
    configs = (
        {name: {MAX_MESSAGE_BYTES: str(limits.topic_message_bytes)} for name in sized}
        if limits
        else {}
    )
    options = options or plain_options(kafka)
    try:
        run_sync(_ensure(options, dict(wanted), report, configs))
        if limits and sized:
            found = run_sync(topic_max_message_bytes(dict(options), sorted(sized)))
            check_topic_sizes(limits, found)
    except (KafkaError, OSError, TimeoutError) as err:
        raise ServiceError(f"kafka: could not create topics: {err!r}") from None
    except SizeLimitError as err:
        raise ServiceError(f"kafka: {err}") from None


WARMUP_GROUP = "kotaflow-stack-warmup"


def warm_group_coordinator(kafka: KafkaSettings, topic: str, report: Report) -> None:
    """Commit one offset in a throw-away group, so the offsets topic exists and its coordinator
    is elected before the first real consumer group joins.

    On a freshly formatted broker the first group otherwise races the offsets topic's creation
    (GroupCoordinatorNotAvailable, a slow first join), which tests see as flakiness.
    """
    try:
        run_sync(_warm(kafka, topic))
    except (KafkaError, OSError, TimeoutError) as err:
        raise ServiceError(f"kafka: group coordinator not ready: {err!r}") from None
    report("kafka: group coordinator ready")


async def _warm(kafka: KafkaSettings, topic: str) -> None:
    consumer = AIOKafkaConsumer(
        **plain_options(kafka), group_id=WARMUP_GROUP, enable_auto_commit=False
    )
    async with asyncio.timeout(60.0):
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.commit({partition: 0})
        finally:
            await consumer.stop()


async def _describe(options: Mapping[str, Any], timeout_s: float) -> ClusterView:
    async with asyncio.timeout(timeout_s), _admin(options, timeout_s) as admin:
        cluster = await admin.describe_cluster()
        topics = await admin.describe_topics()
    return ClusterView(
        cluster_id=cluster.get("cluster_id"),
        brokers=len(cluster.get("brokers", [])),
        partitions={t["topic"]: len(t["partitions"]) for t in topics},
    )


async def _ensure(
    options: Mapping[str, Any],
    wanted: dict[str, int],
    report: Report,
    configs: Mapping[str, dict[str, str]],
) -> None:
    async with _admin(options, timeout_s=30.0) as admin:
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        missing = [
            NewTopic(name, partitions, REPLICATION_FACTOR, topic_configs=configs.get(name, {}))
            for name, partitions in wanted.items()
            if name not in existing
        ]
        for name, partitions in wanted.items():
            if name in existing and existing[name] != partitions:
                report(
                    f"kafka: topic {name} has {existing[name]} partitions, the plan says "
                    f"{partitions}; left as it is"
                )
        if not missing:
            return
        response = await admin.create_topics(missing)
    failures = [
        f"{entry[0]}: error {entry[1]} {entry[2] if len(entry) > 2 else ''}".strip()
        for entry in response.topic_errors
        if entry[1] not in (0, TOPIC_ALREADY_EXISTS)
    ]
    if failures:
        raise ServiceError("kafka: topic creation refused: " + "; ".join(failures))
    report("kafka: created " + ", ".join(f"{t.name} ({t.num_partitions}p)" for t in missing))


@asynccontextmanager
async def _admin(
    options: Mapping[str, Any], timeout_s: float
) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client that is always closed, even when ``start`` fails half-way."""
    client = AIOKafkaAdminClient(
        **options, client_id="kotaflow-stack", request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await client.start()
        yield client
    finally:
        await client.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code, even when the caller's thread has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
