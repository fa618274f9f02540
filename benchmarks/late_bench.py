"""Correction cost: readings/s store + aggregate sustain while a whole day of late data arrives.

Two drains by the same consumer groups of one private readings topic, into scratch buckets
(:func:`tests.support.scratch_influx.scratch_buckets`), each timed from the first record consumed
until both groups have committed to the end (the aggregate commits only what it wrote,
hourly and daily rollups included):

1. *on time*: the enabled devices of the packaged registry, one message each every 5 s over
   the last minutes (the reference; it also moves the watermark to now);
2. *a day late*: the same devices and as many messages, one a minute each over a day that
   ended 24 h ago, as gauges cut off by a storm upload it. Every window is closed by then,
   so every reading is a correction recomputed from the raw points the store wrote.

The ratio of the two rates is what corrections cost. Readings records go straight to the
readings topic (validate is measured by the ``process`` scenario)::

    uv run python -m benchmarks.late_bench [--quick]      # or: kotaflow bench late
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.report import Figure, ScenarioResult
from devices.fleet import load_fleet
from kotaflow.settings import Settings, load_settings
from kotaflow.wire.readings import readings_record
from processors.runner import StageName, run_stages
from processors.runtime.health import Health
from tests.support.isolated_kafka import Record, isolated, produce_all, stage_topics
from tests.support.scratch_influx import scratch_buckets

PARTITIONS = 6
QUICK_DEVICES, FULL_DEVICES = 4, 1000
"""Devices of the packaged registry in a run (all of them for a full run)."""
DAY_MS = 86_400_000
DEADLINE_S = 1200.0


@dataclass(frozen=True, slots=True)
class Drain:
    readings: int
    seconds: float
    corrected_windows: float
    correction_queries: float

    @property
    def rate(self) -> float:
        return self.readings / self.seconds


def backlog(settings: Settings, devices: int, late: bool) -> tuple[list[Record], int]:
    """One message per device per step: a day of minutes ending 24 h ago, or the same count
    5 s apart ending 2 minutes ago."""
    fleet = load_fleet(settings)
    chosen = [d for d in fleet.registry if d.enabled][:devices]
    now = time.time_ns() // 1_000_000
    steps = 1440
    step_ms, end = (60_000, now - DAY_MS) if late else (5_000, now - 120_000)
    records: list[Record] = []
    readings = 0
    for device in chosen:
        metrics = {n: m for n, m in fleet.metrics_of(device).items()}
        units = {n: m.unit for n, m in metrics.items()}
        for i in range(steps):
            ts = end - (steps - i) * step_ms
            values = {n: round(m.minimum + (i % 17) * 0.5, 2) for n, m in metrics.items()}
            value = readings_record(device.id, device.type, device.kecamatan, units, ts, (), values)
            records.append((device.id.encode(), value, []))
            readings += len(values)
    return records, readings


async def _positions(settings: Settings, groups: list[str]) -> tuple[int, list[int]]:
    """End of the readings topic, and each group's committed total (records)."""
    topic = settings.kafka.topics.readings
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    await admin.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        end = sum((await consumer.end_offsets(parts)).values())
        done = []
        for group in groups:
            found = await admin.list_consumer_group_offsets(group, partitions=parts)
            done.append(sum(max(0, om.offset) for om in found.values()))
        return end, done
    finally:
        await consumer.stop()
        await admin.close()


async def drain(settings: Settings, readings: int) -> Drain:
    """Run store + aggregate until both committed the whole topic; time from first record."""
    health = Health("bench")
    stop = asyncio.Event()
    stages = [StageName.STORE, StageName.AGGREGATE]
    task = asyncio.create_task(run_stages(settings, stages, stop, health, signals=False))
    groups = [settings.processing.store.group_id, settings.processing.aggregate.group_id]
    before = health.value("aggregate", "records_in")
    first: float | None = None
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline and not task.done():
            if first is None and health.value("store", "records_in") > before:
                first = time.perf_counter()
            end, done = await _positions(settings, groups)
            if first is not None and all(d >= end for d in done):
                break
            await asyncio.sleep(0.2)  # polling commits with a deadline
        else:
            raise RuntimeError("drain did not finish (or a stage failed)")
        seconds = time.perf_counter() - (first or time.perf_counter())
    finally:
        stop.set()
        await task
    return Drain(
        readings,
        seconds,
        health.value("aggregate", "corrected_windows"),
        health.value("aggregate", "correction_queries"),
    )


def _quick_commits(settings: Settings, rollup_interval_s: float) -> Settings:
    """Recompute hours/days and commit this often (the default, 30 s, would dominate the
    timing of a drain that takes seconds; a shorter one recomputes touched hours more often,
    so the figure is the pessimistic one)."""
    p = settings.processing
    aggregate = p.aggregate.model_copy(
        update={"rollup_interval_s": rollup_interval_s, "flush_interval_s": 1.0}
    )
    return settings.model_copy(update={"processing": p.model_copy(update={"aggregate": aggregate})})


async def measure(
    settings: Settings, quick: bool, rollup_interval_s: float = 1.0
) -> tuple[Drain, Drain]:
    devices = QUICK_DEVICES if quick else FULL_DEVICES
    tag = uuid.uuid4().hex[:8]
    async with scratch_buckets(isolated(settings, tag, prefix="bench"), tag) as mine:
        mine = _quick_commits(mine, rollup_interval_s)
        await stage_topics(mine, create=True, partitions=PARTITIONS)
        try:
            runs = []
            for late in (False, True):
                records, readings = backlog(mine, devices, late)
                await produce_all(mine, mine.kafka.topics.readings, records)
                runs.append(await drain(mine, readings))
        finally:
            await stage_topics(mine, create=False)
    return runs[0], runs[1]


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``late`` scenario of ``kotaflow bench``."""
    on_time, late = await measure(settings, quick)
    return ScenarioResult(
        "late",
        quick,
        {"readings per drain": late.readings, "late span": "1 day, 1 message/min/device"},
        throughput=[
            Figure("store + aggregate, on time: readings/s", on_time.rate, "readings/s"),
            Figure("store + aggregate, a day late: readings/s", late.rate, "readings/s"),
            Figure("late / on time", late.rate / on_time.rate, "ratio"),
            Figure("late windows corrected", late.corrected_windows, "windows"),
            Figure("raw queries for them", late.correction_queries, "queries"),
        ],
        notes=["timed from the first record consumed until both groups committed the end"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rollup-interval-s", type=float, default=1.0)
    args = parser.parse_args()
    on_time, late = asyncio.run(measure(load_settings(), args.quick, args.rollup_interval_s))
    print(
        json.dumps(
            {
                "readings": late.readings,
                "on_time_readings_per_s": round(on_time.rate),
                "late_readings_per_s": round(late.rate),
                "late_over_on_time": round(late.rate / on_time.rate, 3),
                "corrected_windows": late.corrected_windows,
                "correction_queries": late.correction_queries,
                "on_time_s": round(on_time.seconds, 2),
                "late_s": round(late.seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
