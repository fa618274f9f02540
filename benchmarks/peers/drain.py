"""Timing a drain from the outside, the same way for every peer.

A peer is a few processes we do not look inside. Its progress is what it delivered: the
records in the Kafka topic it produces to (MQTT -> Kafka; acks=all, so a record counted is
durable) or the readings queryable in its raw bucket (Kafka -> InfluxDB). Commit intervals
differ (Telegraf commits once a second, kotaflow's aggregate every 30 s), so a commit is
not the progress; it is the end: a drain is *finished* once the peer's consumer groups
have committed everything, so what it wrote is final. :func:`watch_drain` samples progress
and the processes' CPU every :data:`POLL_S`; the steady span runs from
:data:`STEADY_FROM` of the work until all of it, leaving out start-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.children import Child
from benchmarks.procstats import cpu_seconds

POLL_S = 0.05
STEADY_FROM = 0.10
"""The steady span starts once this share of the work is done."""

Progress = Callable[[], Awaitable[float]]
"""Share of the work done so far, 0..1."""


@dataclass(frozen=True, slots=True)
class Span:
    """Wall and CPU seconds (all processes) of one stretch of a drain."""

    wall_s: float
    cpu_s: float
    share: float
    """Share of the work done in it."""


@dataclass(frozen=True, slots=True)
class Drain:
    total: Span
    """From the processes' start to the end of the work."""
    steady: Span
    """From :data:`STEADY_FROM` of the work to its end."""
    first_write_s: float | None
    """From the processes' start until ``first_write`` first said yes."""


def steady_span(samples: Sequence[tuple[float, float, float]], steady_from: float) -> Span:
    """The span of ``samples`` (time, cpu, share done; in order) from the first sample at
    or past ``steady_from`` to the last one."""
    if not samples:
        return Span(0.0, 0.0, 0.0)
    start = next((s for s in samples if s[2] >= steady_from), samples[-1])
    end = samples[-1]
    return Span(end[0] - start[0], end[1] - start[1], end[2] - start[2])


def cpu_of(children: Sequence[Child]) -> float:
    """CPU seconds the still-running ``children`` used so far, all threads, summed (a child
    that exited counts what it had when last sampled)."""
    total = 0.0
    for child in children:
        if child.proc.poll() is None:
            try:
                total += cpu_seconds(child.proc.pid)
                child.sample()
                continue
            except (OSError, ValueError):
                pass
        total += child.last_cost.cpu_s if child.last_cost else 0.0
    return total


async def watch_drain(
    children: Sequence[Child],
    progress: Progress,
    *,
    started: float,
    cpu_before: float = 0.0,
    first_write: Callable[[], Awaitable[bool]] | None = None,
    finished: Callable[[], Awaitable[bool]] | None = None,
    poll_s: float = POLL_S,
    timeout_s: float = 900.0,
) -> Drain:
    """Sample ``progress`` and the children's CPU until the work is all done and
    ``finished()`` (when given) says so too.

    ``started``: ``time.monotonic()`` when the children were started; ``cpu_before``: CPU
    they had used before the work began (0 for fresh processes). Raises if a child exits or
    ``timeout_s`` passes first."""
    samples: list[tuple[float, float, float]] = []
    first_write_s: float | None = None
    deadline = time.monotonic() + timeout_s
    done = 0.0
    while True:
        for child in children:
            child.check_alive()
        if done < 1.0:
            done = min(1.0, await progress())
            now, cpu = time.monotonic(), cpu_of(children) - cpu_before
            samples.append((now, cpu, done))
        if first_write is not None and first_write_s is None and await first_write():
            first_write_s = time.monotonic() - started
        if done >= 1.0 and (finished is None or await finished()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain {100 * done:.0f} % done after {timeout_s:.0f} s")
        await asyncio.sleep(poll_s)
    end = samples[-1]
    total = Span(end[0] - started, end[1], end[2])
    return Drain(total, steady_span(samples, STEADY_FROM), first_write_s)


class KafkaProgress:
    """Committed offsets of consumer groups, and records in topics, read with one admin
    client (a new client per sample would cost more than the sample)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._admin = AIOKafkaAdminClient(**options)
        self._consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)

    async def __aenter__(self) -> KafkaProgress:
        await self._admin.start()
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def committed(self, group: str, topic: str) -> int:
        """Records of ``topic`` that ``group`` has committed (sum over partitions)."""
        offsets = await self._admin.list_consumer_group_offsets(group)
        return sum(
            meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0
        )

    async def records(self, topic: str, partitions: int) -> int:
        """Records in ``topic`` now (sum of its partitions' end offsets)."""
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await self._consumer.end_offsets(tps)
        return int(sum(ends.values()))

    def all_committed(self, wanted: dict[tuple[str, str], int]) -> Callable[[], Awaitable[bool]]:
        """Whether every ``(group, topic)`` has committed its number of records."""

        async def committed() -> bool:
            for (group, topic), count in wanted.items():
                if await self.committed(group, topic) < count:
                    return False
            return True

        return committed

    def topic_progress(self, topic: str, partitions: int, count: int) -> Progress:
        async def share() -> float:
            return await self.records(topic, partitions) / count

        return share
