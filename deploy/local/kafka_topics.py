"""kotaflow's Kafka topics and the admin calls the stack and ``kotaflow kafka topics create``
make: metadata, creation, drift.

The layout comes from ``settings.kafka.layout`` (:class:`~kotaflow.settings.TopicLayout`):
partitions per role (``raw`` and ``readings`` carry every reading and are keyed by device, so
they get the most: aiokafka keeps one batch in flight per partition, and each partition is a
unit of consumer parallelism; the dead-letter and alert topics are low-volume), replication
factor and ``min.insync.replicas`` (by default from the broker count: 1 on one node, 3 and 2
on a 3-broker cluster), retention and ``max.message.bytes``. The bridge's lease topic has
exactly one partition, whatever the layout (whoever is assigned it is the active bridge,
ingest/lease.py).

Sizes: given the bridge's :class:`~ingest.sizes.SizeLimits`, the topics the bridge writes
(raw, dead letters) are created with the ``max.message.bytes`` that follows from
``bridge.max_payload_bytes``, and existing ones that accept less are refused with an error
naming both values (the bridge checks the same at start).

Creation is idempotent: only missing topics are created. An existing topic whose partition
count, replication factor or config differs from the layout is reported (:class:`Drift`),
never changed: more partitions would move devices between partitions, another replication
factor is a partition reassignment, and a config is the operator's to alter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from deploy.local.service import Report, ServiceError
from ingest.sizes import SizeLimitError, SizeLimits, check_topic_sizes
from kotaflow.kafka import MAX_MESSAGE_BYTES, topic_max_message_bytes
from kotaflow.settings import KafkaSettings, TopicLayout

FIXED_PARTITIONS: dict[str, int] = {"bridge_lease": 1}
"""Roles whose partition count is part of their protocol, not a layout choice."""
DEFAULT_PARTITIONS = 3
"""For a topic role added to ``settings.kafka.topics`` without a layout entry."""
MAX_DEFAULT_REPLICATION = 3
MIN_INSYNC_REPLICAS = "min.insync.replicas"
RETENTION_MS = "retention.ms"
TOPIC_ALREADY_EXISTS = 36
"""Kafka's error code when a racing caller created the topic first."""

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterView:
    """What one metadata request tells about the cluster."""

    cluster_id: str | None
    brokers: int
    partitions: dict[str, int]


@dataclass(frozen=True)
class Drift:
    """One way an existing topic differs from the layout; left as it is."""

    topic: str
    what: str
    found: str
    wanted: str

    def __str__(self) -> str:
        return (
            f"kafka: topic {self.topic}: {self.what} is {self.found}, the layout says {self.wanted}"
        )


@dataclass
class TopicsOutcome:
    """What :func:`ensure_topics` did: topics created, left alone, and drift found."""

    replication_factor: int
    configs: dict[str, str]
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)


def planned_topics(kafka: KafkaSettings) -> dict[str, int]:
    """Topic name -> partition count for every topic in ``settings.kafka.topics``."""
    partitions = kafka.layout.partitions.model_dump()
    return {
        name: FIXED_PARTITIONS.get(role, partitions.get(role, DEFAULT_PARTITIONS))
        for role, name in kafka.topics.model_dump().items()
    }


def replication_for(layout: TopicLayout, brokers: int) -> tuple[int, int]:
    """(replication factor, min ISR) of the layout on a cluster of ``brokers``; raise when the
    layout asks for more replicas than there are brokers (Kafka would refuse every topic)."""
    rf = layout.replication_factor or max(1, min(MAX_DEFAULT_REPLICATION, brokers))
    if rf > brokers:
        raise ServiceError(
            f"kafka: the layout asks for {rf} replicas (kafka.layout.replication_factor) but "
            f"the cluster has {brokers} broker(s) answering"
        )
    isr = layout.min_insync_replicas or max(1, rf - 1)
    if isr > rf:
        raise ServiceError(f"kafka: min_insync_replicas {isr} > replication factor {rf}")
    return rf, isr


def topic_configs(layout: TopicLayout, min_isr: int) -> dict[str, str]:
    """The topic-level configs every kotaflow topic gets (Kafka's names, string values)."""
    configs = {
        MIN_INSYNC_REPLICAS: str(min_isr),
        RETENTION_MS: str(round(layout.retention_hours * 3_600_000)),
    }
    if layout.max_message_bytes is not None:
        configs[MAX_MESSAGE_BYTES] = str(layout.max_message_bytes)
    return configs


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
) -> TopicsOutcome:
    """Create the missing topics of ``wanted`` (name -> partitions) with the replication and
    configs of ``kafka.layout``; report drift of the existing ones; raise if Kafka refuses.

    ``options``: aiokafka client options, e.g. ``kotaflow.kafka.client_options`` for a SASL_SSL
    login (the compose deployment's topic job); by default the stack's own, :func:`plain_options`.
    ``limits``: the bridge's size limits; its topics get (or must have) the matching
    ``max.message.bytes`` (see the module).
    """
    sized = {kafka.topics.raw, kafka.topics.deadletter} & set(wanted) if limits else set()
    needed = max(limits.topic_message_bytes, kafka.layout.max_message_bytes or 0) if limits else 0
    sizes = dict.fromkeys(sized, str(needed))
    options = options or plain_options(kafka)
    try:
        outcome = run_sync(_ensure(options, kafka.layout, dict(wanted), report, sizes))
        if limits and sized:
            found = run_sync(topic_max_message_bytes(dict(options), sorted(sized)))
            check_topic_sizes(limits, found)
    except (KafkaError, OSError, TimeoutError) as err:
        raise ServiceError(f"kafka: could not create topics: {err!r}") from None
    except SizeLimitError as err:
        raise ServiceError(f"kafka: {err}") from None
    return outcome


def create_kotaflow_topics(
    kafka: KafkaSettings,
    report: Report,
    options: Mapping[str, Any] | None = None,
    limits: SizeLimits | None = None,
) -> TopicsOutcome:
    """Every topic of ``kafka.topics`` as the layout says: the one path behind ``stack up``,
    ``kotaflow kafka topics create`` and the compose deployment's topic job."""
    return ensure_topics(kafka, planned_topics(kafka), report, options, limits)


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
    layout: TopicLayout,
    wanted: dict[str, int],
    report: Report,
    sizes: Mapping[str, str],
) -> TopicsOutcome:
    """``sizes``: topic -> the bridge's ``max.message.bytes``, over the layout's; checked
    apart (:func:`~ingest.sizes.check_topic_sizes`: less is an error, more is fine)."""
    async with _admin(options, timeout_s=30.0) as admin:
        brokers = len((await admin.describe_cluster()).get("brokers", []))
        rf, isr = replication_for(layout, brokers)
        outcome = TopicsOutcome(replication_factor=rf, configs=topic_configs(layout, isr))
        described = {t["topic"]: t["partitions"] for t in await admin.describe_topics()}
        existing = [name for name in wanted if name in described]
        found_configs = await _topic_configs(admin, existing, set(outcome.configs))
        for name in existing:
            drift = topic_drift(
                name,
                (len(described[name]), _replicas(described[name])),
                found_configs.get(name, {}),
                (wanted[name], rf),
                {
                    k: v
                    for k, v in outcome.configs.items()
                    if not (name in sizes and k == MAX_MESSAGE_BYTES)
                },
            )
            outcome.drift.extend(drift)
            if not drift:
                outcome.unchanged.append(name)
        for item in outcome.drift:
            report(f"{item}; left as it is")
        missing = [
            NewTopic(name, partitions, rf, topic_configs=_with_size(outcome.configs, sizes, name))
            for name, partitions in wanted.items()
            if name not in described
        ]
        if not missing:
            return outcome
        response = await admin.create_topics(missing)
    failures = [
        f"{entry[0]}: error {entry[1]} {entry[2] if len(entry) > 2 else ''}".strip()
        for entry in response.topic_errors
        if entry[1] not in (0, TOPIC_ALREADY_EXISTS)
    ]
    if failures:
        raise ServiceError("kafka: topic creation refused: " + "; ".join(failures))
    outcome.created = [t.name for t in missing]
    report(
        "kafka: created "
        + ", ".join(f"{t.name} ({t.num_partitions}p)" for t in missing)
        + f" with replication {rf}, "
        + ", ".join(f"{k}={v}" for k, v in outcome.configs.items())
    )
    return outcome


def _with_size(configs: dict[str, str], sizes: Mapping[str, str], name: str) -> dict[str, str]:
    """The configs a new topic ``name`` is created with."""
    return {**configs, MAX_MESSAGE_BYTES: sizes[name]} if name in sizes else configs


def topic_drift(
    topic: str,
    found: tuple[int, int],
    found_configs: Mapping[str, str],
    wanted: tuple[int, int],
    wanted_configs: Mapping[str, str],
) -> list[Drift]:
    """How an existing topic (partitions, replicas; configs) differs from the layout."""
    drift = [
        Drift(topic, what, str(have), str(want))
        for what, have, want in (
            ("partition count", found[0], wanted[0]),
            ("replication factor", found[1], wanted[1]),
        )
        if have != want
    ]
    drift += [
        Drift(topic, key, found_configs.get(key, "unset"), value)
        for key, value in wanted_configs.items()
        if found_configs.get(key) != value
    ]
    return drift


def _replicas(partitions: list[dict[str, Any]]) -> int:
    """The replication factor of a topic: the most replicas any partition has."""
    return max((len(p.get("replicas", [])) for p in partitions), default=0)


async def _topic_configs(
    admin: AIOKafkaAdminClient, topics: list[str], keys: set[str]
) -> dict[str, dict[str, str]]:
    """Each topic's effective value of ``keys`` (explicit, or the broker's default)."""
    if not topics:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(keys)) for t in topics]
    )
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for error, _, _, name, entries in response.resources:
            if error == 0:
                found[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return found


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
