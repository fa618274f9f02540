"""The bridge's Kafka producer: durable first, then tuned for many small records.

- ``enable_idempotence=True``, which forces ``acks="all"``: a record is confirmed only when
  every in-sync replica has it, and the producer's own retries add no duplicates.
- Batching: ``linger_ms`` and ``max_batch_bytes`` from the settings. Device messages are
  a few hundred bytes, so one batch per partition carries hundreds of them.
- Compression: zstd by default. aiokafka compresses gzip at level 9, about 11 us per
  telemetry message here, a large share of the bridge's budget; zstd reaches the same ratio
  (~6x on JSON) for about 0.4 us. It needs the ``aiokafka[zstd]`` extra (cramjam), which the
  package depends on, so every kotaflow consumer can read it.
- Size: ``max_request_size`` follows from ``bridge.max_payload_bytes`` (:mod:`ingest.sizes`),
  like the topics' ``max.message.bytes`` the bridge checks at start.
- Partitioning: Kafka's default (murmur2 of the key, like the Java client) so a device's
  records stay on one partition whoever produced them; aiokafka computes murmur2 in pure
  Python on every send, so results are memoised per key and partition count.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ingest.sizes import SizeLimits
from kotaflow.kafka import client_options
from kotaflow.settings import Settings


class CachedPartitioner:
    """Kafka's default partitioner with a bounded memo (one per producer, not global)."""

    __slots__ = ("_cache", "_default", "_max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        self._default = DefaultPartitioner()
        self._cache: dict[tuple[bytes, int], int] = {}
        self._max_entries = max_entries

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: list[int]
    ) -> int:
        if key is None:
            partition: int = self._default(key, all_partitions, available)
            return partition
        memo = (key, len(all_partitions))
        found = self._cache.get(memo)
        if found is None:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            found = self._cache[memo] = self._default(key, all_partitions, available)
        return found


def make_bridge_producer(settings: Settings) -> AIOKafkaProducer:
    """An unstarted producer (create it inside the running loop)."""
    bridge = settings.bridge
    return AIOKafkaProducer(
        **client_options(settings),
        client_id=f"kotaflow-bridge/{bridge.client_id}",
        enable_idempotence=True,
        acks="all",
        linger_ms=bridge.linger_ms,
        max_batch_size=bridge.max_batch_bytes,
        max_request_size=SizeLimits.of(bridge).request_bytes,
        compression_type=None if bridge.compression == "none" else bridge.compression,
        partitioner=CachedPartitioner(),
        request_timeout_ms=30_000,
    )
