"""Appending records straight into aiokafka producer batches, and Kafka's key partitioning.

The bridge (``ingest/batcher.py``) and the validate stage (``processors/validate.py``) both
skip ``AIOKafkaProducer.send`` (one coroutine, future and callback per record) and append
records into ``create_batch()`` batches that they submit whole with ``send_batch``. For that
they pick the partition themselves, as Kafka's default partitioner does (murmur2 of the key,
like the Java client, so a device stays on one partition whoever produced it), and roll over
to a new batch when one is full. Both use the two pieces here, on aiokafka's public API:

* :func:`append_or_roll`: append one record; a full batch is closed (so no later, smaller
  record slips in ahead of the refused one) and the record starts a fresh batch;
* :class:`CachedPartitioner`: the default partitioner with a bounded memo, because aiokafka
  computes murmur2 in pure Python on every call.

Foundation plumbing: imports aiokafka only, nothing of the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

Headers = list[tuple[str, bytes]]
"""aiokafka's C batch builder takes a list, nothing else."""

NO_HEADERS: Headers = []
"""Shared, never mutated: ``BatchBuilder.append`` only reads it."""


def append_or_roll(
    batch: Any,
    new_batch: Callable[[], Any],
    key: bytes | None,
    value: bytes,
    timestamp_ms: int,
    headers: Headers = NO_HEADERS,
) -> Any | None:
    """Append one record to ``batch`` (a ``create_batch()`` batch); None if it fit.

    If ``batch`` is full, ``BatchBuilder.append`` has closed it; the record goes into a batch
    from ``new_batch``, which is returned: the caller queues ``batch`` for sending before the
    new one. Raises ``MessageSizeTooLargeError`` for a record no batch can take (an empty
    batch refused it), so it is never dropped silently.
    """
    if batch.append(timestamp=timestamp_ms, key=key, value=value, headers=headers) is not None:
        return None
    if batch.record_count() == 0:
        raise MessageSizeTooLargeError(f"record of {len(value)} bytes exceeds a batch")
    fresh = new_batch()
    if fresh.append(timestamp=timestamp_ms, key=key, value=value, headers=headers) is None:
        raise MessageSizeTooLargeError(f"record of {len(value)} bytes exceeds a batch")
    return fresh


class CachedPartitioner:
    """Kafka's default partitioner with a bounded memo (one per producer or stage, not
    global); callable as aiokafka's ``partitioner`` argument."""

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
