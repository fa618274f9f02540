"""Processor throughput: readings/s one process drains from a pre-filled Kafka backlog.

Fills private ``bench.<id>.raw`` topics with native-JSON messages from every enabled device
of the packaged registry (each message carries all the metrics of its device type, one
second apart per device), then runs the chosen stages in this process (one asyncio loop,
exactly as ``kotaflow process`` does) and times them from start until every message was
consumed and every reading written (validate: produced and acked; store: written to
InfluxDB), including the final flush and commit.

Needs the local stack (``kotaflow stack up``). Prints one JSON line of figures.

    uv run python benchmarks/processors_throughput.py --messages 100000 --stage validate
    uv run python benchmarks/processors_throughput.py --messages 50000 \\
        --stage validate --stage store
    uv run python benchmarks/processors_throughput.py --messages 50000 --profile out.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import sys
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.fleet import Fleet, load_fleet
from devices.topics import DeviceKeyKind, PayloadFormat, device_topic
from ingest.envelope import RawEnvelope
from kotaflow.settings import Settings, load_settings
from processors.health import Health
from processors.runner import StageName, run_stages
from processors.testing import isolated, produce_all

PARTITIONS = 6


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


async def fill(settings: Settings, envelopes: list[RawEnvelope]) -> float:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    t = settings.kafka.topics
    await admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in (t.raw, t.readings, t.deadletter)]
    )
    await admin.close()
    started = time.perf_counter()
    records = [(e.key(), e.payload, e.headers()) for e in envelopes]
    await produce_all(settings, t.raw, records)
    return time.perf_counter() - started


async def drain(
    settings: Settings, stages: list[StageName], expected_in: int, expected_readings: int
) -> tuple[float, float, Health]:
    health = Health("bench")
    stop = asyncio.Event()
    started = time.perf_counter()
    cpu_started = time.process_time()
    task = asyncio.create_task(run_stages(settings, stages, stop, health, signals=False))

    def done() -> bool:
        if health.value("validate", "records_in") < expected_in:
            return False
        downstream = [s for s in stages if s is not StageName.VALIDATE]
        return all(health.value(s.value, "records_in") >= expected_readings for s in downstream)

    deadline = time.monotonic() + 1800
    while not done() and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # polling counters with a deadline, not waiting for an event
    stop.set()
    await task
    return time.perf_counter() - started, time.process_time() - cpu_started, health


async def cleanup(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    t = settings.kafka.topics
    try:
        await admin.delete_topics([t.raw, t.readings, t.deadletter])
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    stage_names = ["validate", "store", "aggregate"]
    parser.add_argument("--stage", action="append", choices=stage_names, default=None)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the drain here")
    args = parser.parse_args()
    stages = [StageName(s) for s in (args.stage or ["validate"])]
    if StageName.VALIDATE not in stages:
        stages.insert(0, StageName.VALIDATE)
    settings = isolated(load_settings(), uuid.uuid4().hex[:8], prefix="bench")
    fleet = load_fleet(settings)
    span_ms = args.messages // max(1, len(fleet.registry)) * 1000 + 120_000
    envelopes, readings = messages(fleet, args.messages, time.time_ns() // 10**6 - span_ms)
    fill_s = asyncio.run(fill(settings, envelopes))
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    elapsed, cpu, health = asyncio.run(drain(settings, stages, len(envelopes), readings))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    asyncio.run(cleanup(settings))
    figures = {
        "stages": [s.value for s in stages],
        "messages": len(envelopes),
        "readings": readings,
        "fill_s": round(fill_s, 2),
        "drain_s": round(elapsed, 2),
        "messages_per_s": round(len(envelopes) / elapsed),
        "readings_per_s": round(readings / elapsed),
        "process_cpu_s": round(cpu, 2),
        "readings_per_cpu_s": round(readings / cpu),
        "load_avg_1m": os.getloadavg()[0],
        "validate_out": health.value("validate", "records_out"),
        "deadletters": health.value("validate", "deadletter"),
        "store_points_in": health.value("store", "records_in"),
        "store_lines_out": health.value("store", "records_out"),
        "aggregate_rollups_out": health.value("aggregate", "records_out"),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
