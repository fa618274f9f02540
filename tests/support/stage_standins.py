"""In-memory stand-ins for a stage's Kafka and InfluxDB clients, for the stage contract
suite (``tests/contracts/``) only: every other test talks to the real services.

:class:`StandInClients` is a :class:`~processors.runtime.clients.StageClients` whose consumer,
producer, admin client and InfluxDB writer share one :class:`MemoryKafka` and one
:class:`MemoryInflux`. They keep to what the stages use of aiokafka's and our InfluxDB
writer's public behaviour:

* the consumer assigns every partition of its topic on the first ``getmany`` (the rebalance
  listener runs there, as in aiokafka, while the loop waits in ``getmany``), starts each
  partition at its committed offset, and on :meth:`MemoryConsumer.rebalance` revokes and
  reassigns partitions at the next ``getmany``; ``commit`` of a partition it does not own
  fails with ``CommitFailedError``; each commit is shown to a checker first;
* a producer delivery is acknowledged on a later turn of the event loop, never inside
  ``send``/``send_batch``, so a commit made before awaiting it sees it unacknowledged; with
  ``fail`` set, deliveries fail (``KafkaTimeoutError``);
* the InfluxDB writer keeps lines per bucket, or raises ``OSError`` with ``fail`` set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from kotaflow.settings import Settings, StageConsumer
from processors.runtime.clients import InfluxClient, StageClients
from processors.runtime.influx import Refused
from processors.runtime.write_block import BlockGauge

CommitCheck = Callable[[str, dict[TopicPartition, OffsetAndMetadata]], None]


@dataclass(frozen=True, slots=True)
class Produced:
    topic: str
    partition: int
    key: bytes | None
    value: bytes


@dataclass
class MemoryKafka:
    """Topics, committed offsets and acknowledged records of an in-memory "cluster"."""

    partitions: int = 2
    logs: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = field(default_factory=dict)
    committed: dict[str, dict[TopicPartition, OffsetAndMetadata]] = field(default_factory=dict)
    commits: list[tuple[str, dict[TopicPartition, OffsetAndMetadata]]] = field(default_factory=list)
    """Every commit, in order: (group, offsets)."""
    acked: list[Produced] = field(default_factory=list)
    fail_deliveries: bool = False
    check_commit: CommitCheck | None = None

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> ConsumerRecord[bytes, bytes]:
        """Put one record at the end of ``topic``'s ``partition``."""
        log = self.logs.setdefault(TopicPartition(topic, partition), [])
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=len(log),
            timestamp=1_764_300_000_000 + len(log),
            timestamp_type=0,
            key=key,
            value=value,
            checksum=None,
            serialized_key_size=len(key or b""),
            serialized_value_size=len(value),
            headers=tuple(headers),
        )
        log.append(record)
        return record

    def topic_partitions(self, topic: str) -> set[TopicPartition]:
        return {TopicPartition(topic, p) for p in range(self.partitions)}

    def on(self, topic: str) -> list[Produced]:
        return [p for p in self.acked if p.topic == topic]


class MemoryConsumer:
    def __init__(self, kafka: MemoryKafka, group_id: str) -> None:
        self._kafka = kafka
        self.group_id = group_id
        self._listener: ConsumerRebalanceListener | None = None
        self._topic = ""
        self.assignment: set[TopicPartition] = set()
        self.position: dict[TopicPartition, int] = {}
        self._pending: tuple[set[TopicPartition], set[TopicPartition]] | None = None
        self.stopped = False
        self.empty_polls = 0
        """Polls in a row that found nothing (the loop handled everything fetched before)."""

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        (self._topic,) = topics
        self._listener = listener

    async def start(self) -> None:
        self._pending = (set(), self._kafka.topic_partitions(self._topic))

    async def stop(self) -> None:
        self.stopped = True

    def rebalance(self, revoked: set[TopicPartition], assigned: set[TopicPartition]) -> None:
        """At the next ``getmany``: revoke these partitions, then assign those."""
        self._pending = (revoked, assigned)

    async def getmany(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        await asyncio.sleep(0)
        if self._pending is not None:
            await self._apply_rebalance(*self._pending)
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        room = max_records
        for tp in sorted(self.assignment):
            log = self._kafka.logs.get(tp, [])
            start = self.position[tp]
            taken = log[start : start + room]
            if taken:
                out[tp] = taken
                self.position[tp] = start + len(taken)
                room -= len(taken)
        if out:
            self.empty_polls = 0
        else:
            self.empty_polls += 1
            await asyncio.sleep(timeout_ms / 1000)
        return out

    async def _apply_rebalance(
        self, revoked: set[TopicPartition], assigned: set[TopicPartition]
    ) -> None:
        self._pending = None
        assert self._listener is not None
        if revoked:
            await self._listener.on_partitions_revoked(revoked)
            self.assignment -= revoked
        if assigned:
            committed = self._kafka.committed.get(self.group_id, {})
            for tp in assigned:
                found = committed.get(tp)
                self.position[tp] = found.offset if found is not None else 0
            self.assignment |= assigned
            await self._listener.on_partitions_assigned(assigned)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not set(offsets) <= self.assignment:
            raise CommitFailedError("partitions not assigned to this member")
        if self._kafka.check_commit is not None:
            self._kafka.check_commit(self.group_id, dict(offsets))
        self._kafka.commits.append((self.group_id, dict(offsets)))
        self._kafka.committed.setdefault(self.group_id, {}).update(offsets)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self._kafka.logs.get(tp, []))


class MemoryBatch:
    """A ``create_batch()`` batch: public ``append``/``close``/``record_count`` only."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._size = 0
        self._closed = False
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(
        self, *, timestamp: int, key: bytes | None, value: bytes, headers: Sequence[Any] = ()
    ) -> object | None:
        size = len(key or b"") + len(value) + 20
        if self._closed or (self.records and self._size + size > self._max_bytes):
            self._closed = True
            return None
        self._size += size
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self._closed = True

    def closed(self) -> bool:
        return self._closed

    def record_count(self) -> int:
        return len(self.records)


class MemoryProducer:
    def __init__(self, kafka: MemoryKafka, max_batch_bytes: int) -> None:
        self._kafka = kafka
        self._max_batch_bytes = max_batch_bytes

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self._kafka.partitions))

    def create_batch(self) -> MemoryBatch:
        return MemoryBatch(self._max_batch_bytes)

    async def send_batch(
        self, batch: MemoryBatch, topic: str, partition: int
    ) -> asyncio.Future[Any]:
        batch.close()
        return self._deliver([Produced(topic, partition, k, v) for k, v in batch.records])

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        return self._deliver([Produced(topic, 0, key, value)])

    def _deliver(self, records: list[Produced]) -> asyncio.Future[Any]:
        """A future the "brokers" resolve on a later turn of the loop."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def ack() -> None:
            if self._kafka.fail_deliveries:
                future.set_exception(KafkaTimeoutError("delivery failed (stand-in)"))
            else:
                self._kafka.acked.extend(records)
                future.set_result(None)

        asyncio.get_running_loop().call_soon(ack)
        return future


class MemoryAdmin:
    def __init__(self, kafka: MemoryKafka) -> None:
        self._kafka = kafka

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_consumer_group_offsets(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        committed = self._kafka.committed.get(group_id, {})
        return {tp: committed[tp] for tp in partitions if tp in committed}


@dataclass
class MemoryInflux:
    """Lines per bucket, as an :class:`~processors.runtime.clients.InfluxWriter`."""

    lines: dict[str, list[str]] = field(default_factory=dict)
    fail: bool = False

    async def write(
        self, bucket: str, lines: Sequence[str], stage: str = "influxdb"
    ) -> list[Refused]:
        await asyncio.sleep(0)
        if self.fail:
            raise OSError("InfluxDB unreachable (stand-in)")
        self.lines.setdefault(bucket, []).extend(lines)
        return []

    async def query(self, flux: str, stage: str | None = None) -> list[dict[str, Any]]:
        return []

    def tokens(self) -> tuple[str, str]:
        return ("stand-in", "stand-in")

    async def __aenter__(self) -> MemoryInflux:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class StandInClients(StageClients):
    """The client factory of the contract tests: everything in memory."""

    def __init__(self, kafka: MemoryKafka, influx: MemoryInflux) -> None:
        self.kafka = kafka
        self.memory_influx = influx
        self.consumers: list[MemoryConsumer] = []

    def consumer(self, settings: Settings, stage: StageConsumer, client_id: str) -> Any:
        made = MemoryConsumer(self.kafka, stage.group_id)
        self.consumers.append(made)
        return made

    def producer(
        self, settings: Settings, client_id: str, linger_ms: int, max_batch_bytes: int
    ) -> Any:
        return MemoryProducer(self.kafka, max_batch_bytes)

    def admin(self, settings: Settings, client_id: str) -> Any:
        return MemoryAdmin(self.kafka)

    def influx(
        self,
        settings: Settings,
        role: str | None = None,
        gauge: BlockGauge | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> InfluxClient:
        return self.memory_influx


def source_offsets(kafka: MemoryKafka, topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of the input records the dead letters on ``topic`` name."""
    found = set()
    for produced in kafka.on(topic):
        source = json.loads(produced.value)["source"]
        found.add((source["partition"], source["offset"]))
    return found
