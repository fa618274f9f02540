"""Kafka clients configured the way every stage needs them (aiokafka 0.14).

* Consumers: a stage's own group, ``enable_auto_commit=False`` (auto-commit is timer-based
  and would commit what was not yet written), ``auto_offset_reset="earliest"`` so a new
  group starts from the beginning of the retained data, the eager round-robin assignor.
* Producers: ``enable_idempotence=True`` (forces ``acks="all"``: no duplicates from the
  producer's own retries, nothing acknowledged that a broker failure can lose), large
  batches and a short linger, because validate sends many small records.
* An admin client to read another group's committed offsets (aggregate waits for store).

Clients are created inside a coroutine (aiokafka binds them to the running loop). Listener,
TLS and SASL options come from ``kotaflow.kafka.client_options``.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from kotaflow.kafka import client_options
from kotaflow.settings import Settings, StageConsumer


def make_consumer(settings: Settings, stage: StageConsumer, client_id: str) -> AIOKafkaConsumer:
    """An unsubscribed consumer of ``stage.group_id`` (subscribe with a rebalance listener)."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=stage.group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=stage.max_poll_interval_ms,
        fetch_min_bytes=stage.fetch_min_bytes,
        fetch_max_wait_ms=stage.fetch_max_wait_ms,
        max_partition_fetch_bytes=1024 * 1024,
        fetch_max_bytes=8 * 1024 * 1024,
        isolation_level="read_uncommitted",
    )


def make_producer(
    settings: Settings, client_id: str, linger_ms: int = 5, max_batch_bytes: int = 1_048_576
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        client_id=client_id,
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=max_batch_bytes,
        max_request_size=max(max_batch_bytes, 1_048_576),
        request_timeout_ms=30_000,
    )


def make_admin(settings: Settings, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings), client_id=client_id)
