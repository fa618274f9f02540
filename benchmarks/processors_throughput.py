"""Processor throughput: readings/s one process drains from a pre-filled Kafka backlog.

Fills private ``bench.<id>.raw`` topics with native-JSON messages from every enabled device
of the packaged registry (each message carries all the metrics of its device type, one
second apart per device), then runs the chosen stages in a fresh child process (one asyncio
loop, exactly as ``kotaflow process`` does) and times them from start until every message
was consumed and every reading written (validate: produced and acked; store: written to
InfluxDB), including the final flush and commit. The child is a fresh interpreter, so its
peak RSS is the stages' own, not the backlog the parent built.

The ``process`` scenario of ``kotaflow bench`` drains in two steps, each its own process:
``validate`` alone (CPU-bound: the per-process target), then ``store`` + ``aggregate`` on
what validate produced, into scratch InfluxDB buckets (InfluxDB-bound).

Needs the local stack (``kotaflow stack up``). On its own it prints one JSON line::

    uv run python -m benchmarks.processors_throughput --messages 100000 --stage validate
    uv run python -m benchmarks.processors_throughput --messages 50000 \\
        --stage validate --stage store
    uv run python -m benchmarks.processors_throughput --messages 50000 --profile out.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.isolation import scratch_buckets
from benchmarks.procstats import ProcessCost, own_cost
from benchmarks.report import Figure, ScenarioResult, Target
from devices.fleet import Fleet, load_fleet
from devices.topics import device_topic
from kotaflow.settings import Settings, load_settings
from kotaflow.wire.raw import DeviceKeyKind, PayloadFormat, RawEnvelope
from processors.runner import StageName, run_stages
from processors.runtime.health import Health
from tests.support.isolated_kafka import isolated, produce_all, stage_topics

PARTITIONS = 6
QUICK_MESSAGES, FULL_MESSAGES = 40_000, 200_000
COUNTERS = (
    ("validate", "records_in"),
    ("validate", "records_out"),
    ("validate", "deadletter"),
    ("store", "records_in"),
    ("store", "records_out"),
    ("aggregate", "records_in"),
    ("aggregate", "records_out"),
)
"""The health figures a drain reports back from its child process."""


@dataclass(frozen=True, slots=True)
class DrainRun:
    """One drain, measured inside the process that ran it."""

    stages: tuple[str, ...]
    timing: Timing
    counters: dict[str, float]
    """``<stage>.<figure>`` -> value, e.g. ``validate.records_out``."""
    cost: ProcessCost


def messages(fleet: Fleet, count: int, start_ms: int) -> tuple[list[RawEnvelope], int]:
    """``count`` envelopes round-robin over the enabled devices, and how many readings."""
    devices = [d for d in fleet.registry if d.enabled]
    payloads = []
    for device in devices:
        metrics = fleet.metrics_of(device)
        values = {name: round((m.minimum + m.maximum) / 2, 2) for name, m in metrics.items()}
        payloads.append((device.id, values))
    out: list[RawEnvelope] = []
    readings = 0
    for i in range(count):
        device_id, values = payloads[i % len(payloads)]
        ts = start_ms + (i // len(payloads)) * 1000
        body = json.dumps({"ts": ts, "values": values}).encode()
        out.append(
            RawEnvelope(
                body,
                device_topic(PayloadFormat.NATIVE_JSON, device_id),
                device_id,
                DeviceKeyKind.DEVICE_ID,
                PayloadFormat.NATIVE_JSON,
                ts + 50,
            )
        )
        readings += len(values)
    return out, readings


def backlog(settings: Settings, count: int) -> tuple[list[RawEnvelope], int]:
    """The backlog's envelopes, timed in the past so that aggregate's windows close."""
    fleet = load_fleet(settings)
    span_ms = count // max(1, len(fleet.registry)) * 1000 + 120_000
    return messages(fleet, count, time.time_ns() // 10**6 - span_ms)


async def fill(settings: Settings, envelopes: list[RawEnvelope]) -> float:
    """Create the run's topics and write the backlog to raw; seconds the writing took."""
    await stage_topics(settings, create=True, partitions=PARTITIONS)
    t = settings.kafka.topics
    started = time.perf_counter()
    records = [(e.key(), e.payload, e.headers()) for e in envelopes]
    await produce_all(settings, t.raw, records)
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall and CPU seconds of a drain: in all, and from the first record consumed on
    (start-up - fleet loading, group join, clients - left out) with the share of the work
    done in that window."""

    elapsed_s: float
    cpu_s: float
    steady_s: float
    steady_cpu_s: float
    steady_share: float

    def rate(self, items: int) -> float:
        """Items per second from the first record on."""
        return items * self.steady_share / self.steady_s

    def per_cpu_s(self, items: int) -> float:
        """Items per CPU-second of this process from the first record on."""
        return items * self.steady_share / self.steady_cpu_s


async def drain(
    settings: Settings, stages: list[StageName], expected_records: int
) -> tuple[Timing, Health]:
    """Run ``stages`` until each consumed ``expected_records`` records: every message of the
    backlog is one device at one time, so one raw record and one readings record."""
    health = Health("bench")
    stop = asyncio.Event()
    started = time.perf_counter()
    cpu_started = time.process_time()
    task = asyncio.create_task(run_stages(settings, stages, stop, health, signals=False))
    goal = {s: expected_records for s in stages}

    def work() -> float:
        """Share of the whole drain done so far."""
        return sum(min(health.value(s.value, "records_in"), n) for s, n in goal.items()) / sum(
            goal.values()
        )

    first: tuple[float, float, float] | None = None
    deadline = time.monotonic() + 1800
    while work() < 1 and not task.done() and time.monotonic() < deadline:
        if first is None and work() > 0:
            first = (time.perf_counter(), time.process_time(), work())
        await asyncio.sleep(0.05)  # polling counters with a deadline, not waiting for an event
    stop.set()
    await task
    end, cpu_end = time.perf_counter(), time.process_time()
    first = first or (started, cpu_started, 0.0)
    timing = Timing(
        end - started, cpu_end - cpu_started, end - first[0], cpu_end - first[1], 1 - first[2]
    )
    return timing, health


def drain_in_child(
    settings: Settings,
    stages: list[StageName],
    expected_records: int,
    profile: Path | None = None,
) -> DrainRun:
    """:func:`drain` in a fresh interpreter (spawned, not forked: nothing of ours inherited)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        stage_names = tuple(s.value for s in stages)
        # load_settings() returns an instance of a local class: rebuild it as a Settings
        # (validated, no sources read again) so that it pickles.
        portable = Settings.model_validate(settings.model_dump())
        job = pool.submit(_drain_here, portable, stage_names, expected_records, profile)
        return job.result()


def _drain_here(
    settings: Settings,
    stage_names: tuple[str, ...],
    expected_records: int,
    profile: Path | None,
) -> DrainRun:
    stages = [StageName(s) for s in stage_names]
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    timing, health = asyncio.run(drain(settings, stages, expected_records))
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    counters = {f"{stage}.{name}": health.value(stage, name) for stage, name in COUNTERS}
    name = "kotaflow process --stage " + " --stage ".join(stage_names)
    cost = own_cost(name)
    return DrainRun(
        stage_names, timing, counters, ProcessCost(name, cost.peak_rss_mb, timing.cpu_s)
    )


async def cleanup(settings: Settings) -> None:
    """Delete the run's raw, readings and dead-letter topics (never raises)."""
    await stage_topics(settings, create=False)


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``process`` scenario of ``kotaflow bench``: validate, then store + aggregate."""
    count = QUICK_MESSAGES if quick else FULL_MESSAGES
    tag = uuid.uuid4().hex[:8]
    async with scratch_buckets(isolated(settings, tag, prefix="bench"), tag) as mine:
        envelopes, readings = backlog(mine, count)
        try:
            fill_s = await fill(mine, envelopes)
            del envelopes
            validate = await asyncio.to_thread(drain_in_child, mine, [StageName.VALIDATE], count)
            write = await asyncio.to_thread(
                drain_in_child, mine, [StageName.STORE, StageName.AGGREGATE], count
            )
        finally:
            await cleanup(mine)
    v, w = validate.timing, write.timing
    per_cpu = v.per_cpu_s(readings)
    return ScenarioResult(
        "process",
        quick,
        {"messages": count, "readings": readings, "format": "native-json", "fill_s": fill_s},
        throughput=[
            Figure("validate: readings/s (wall)", v.rate(readings), "readings/s"),
            Figure("validate: readings per CPU-second", per_cpu, "readings/s"),
            Figure("store + aggregate: readings/s (wall)", w.rate(readings), "readings/s"),
            Figure(
                "store + aggregate: readings per CPU-second", w.per_cpu_s(readings), "readings/s"
            ),
            Figure("points written to telemetry", write.counters["store.records_out"], "lines"),
            Figure("rollups written", write.counters["aggregate.records_out"], "rows"),
        ],
        processes=[validate.cost, write.cost],
        targets=[
            Target("validate: readings per CPU-second", per_cpu, 100_000, "readings/s"),
            Target(validate.cost.name, validate.cost.peak_rss_mb, 200, "MB", "<="),
            Target(write.cost.name, write.cost.peak_rss_mb, 200, "MB", "<="),
        ],
        notes=[
            "rates from the first record consumed on (start-up left out); CPU figures in "
            "full; no per-reading latency in a backlog drain (see e2e)",
            f"validate out {validate.counters['validate.records_out']:,.0f} readings, "
            f"dead letters {validate.counters['validate.deadletter']:,.0f}",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=FULL_MESSAGES)
    stage_names = ["validate", "store", "aggregate"]
    parser.add_argument("--stage", action="append", choices=stage_names, default=None)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the drain here")
    args = parser.parse_args()
    stages = [StageName(s) for s in (args.stage or ["validate"])]
    if StageName.VALIDATE not in stages:
        stages.insert(0, StageName.VALIDATE)
    asyncio.run(_standalone(stages, args.messages, args.profile))


async def _standalone(stages: list[StageName], count: int, profile: Path | None) -> None:
    tag = uuid.uuid4().hex[:8]
    async with scratch_buckets(isolated(load_settings(), tag, prefix="bench"), tag) as settings:
        envelopes, readings = backlog(settings, count)
        try:
            fill_s = await fill(settings, envelopes)
            run = await asyncio.to_thread(drain_in_child, settings, stages, len(envelopes), profile)
        finally:
            await cleanup(settings)
    t = run.timing
    figures = {
        "stages": list(run.stages),
        "messages": len(envelopes),
        "readings": readings,
        "fill_s": round(fill_s, 2),
        "drain_s": round(t.elapsed_s, 2),
        "process_cpu_s": round(t.cpu_s, 2),
        "steady_s": round(t.steady_s, 2),
        "steady_cpu_s": round(t.steady_cpu_s, 2),
        "messages_per_s": round(t.rate(len(envelopes))),
        "readings_per_s": round(t.rate(readings)),
        "readings_per_cpu_s": round(t.per_cpu_s(readings)),
        "peak_rss_mb": round(run.cost.peak_rss_mb, 1),
        "load_avg_1m": os.getloadavg()[0],
        **run.counters,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
