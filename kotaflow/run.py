"""``kotaflow run``: the whole pipeline with simulated devices on the local stack.

Each part runs as its own ``kotaflow <part>`` process, exactly as in production, so a
crash of one is visible and the others keep going. The live view polls Kafka's end offsets
of kotaflow's topics, which shows every stage's output rate without reaching into any of
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from rich.console import Group
from rich.live import Live
from rich.table import Table

from kotaflow.kafka import client_options
from kotaflow.processes import stop_gracefully
from kotaflow.settings import Settings


@dataclass
class Part:
    """One pipeline process: the ``kotaflow`` sub-command and its arguments."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class TopicRates:
    last: dict[str, int] = field(default_factory=dict)
    last_at: float = 0.0


def pipeline_parts(available: set[str], rate: float, faults: str) -> list[Part]:
    """The processes to start, in data-flow order, limited to the parts that exist."""
    wanted = [
        Part("bridge", ["bridge"]),
        Part("process", ["process"]),
        Part("alert", ["alert"]),
        Part("simulate", ["simulate", "--rate", f"{rate:g}", "--faults", faults]),
    ]
    return [part for part in wanted if part.argv[0] in available]


def start(part: Part, config: Path | None, log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    part.log = log_dir / f"{part.name}.log"
    argv = [sys.executable, "-m", "kotaflow"]
    if config is not None:
        argv += ["--config", str(config)]
    with part.log.open("ab") as log:
        part.proc = subprocess.Popen(
            argv + part.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def stop(parts: list[Part], timeout: float = 20.0) -> None:
    """SIGTERM in reverse data-flow order (sources first), so in-flight work drains."""
    for part in reversed(parts):
        if part.proc is not None:
            stop_gracefully(part.proc, timeout)


async def topic_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (a plain consumer only knows the topics it subscribed)."""
    described = await admin.describe_topics(topics)
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        for p in t.get("partitions", [])
    ]


async def topic_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[str, int]:
    ends = await consumer.end_offsets(partitions) if partitions else {}
    totals: dict[str, int] = {}
    for tp, end in ends.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + end
    return totals


def render(parts: list[Part], totals: dict[str, int], rates: dict[str, float]) -> Group:
    procs = Table(title="kotaflow pipeline")
    for column in ("part", "state", "log"):
        procs.add_column(column)
    for part in parts:
        code = part.proc.poll() if part.proc else None
        state = "[green]running[/green]" if code is None else f"[red]exited {code}[/red]"
        procs.add_row(part.name, state, str(part.log))
    flow = Table(title="records in Kafka (all time) and rate now")
    for column in ("topic", "records", "per second"):
        flow.add_column(column)
    for topic, total in totals.items():
        flow.add_row(topic, f"{total:,}", f"{rates.get(topic, 0.0):,.0f}")
    return Group(procs, flow)


async def watch(settings: Settings, parts: list[Part], duration: float | None) -> None:
    t = settings.kafka.topics
    topics = [t.raw, t.readings, t.deadletter, t.alerts]
    options = client_options(settings)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        partitions = await topic_partitions(admin, topics)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**options)
    await consumer.start()
    try:
        state = TopicRates()
        deadline = None if duration is None else time.monotonic() + duration
        with Live(render(parts, {}, {}), refresh_per_second=2) as live:
            while deadline is None or time.monotonic() < deadline:
                found = await topic_offsets(consumer, partitions)
                totals = {topic: found.get(topic, 0) for topic in topics}
                now = time.monotonic()
                span = now - state.last_at if state.last_at else 0.0
                rates = {
                    k: (v - state.last.get(k, v)) / span if span else 0.0 for k, v in totals.items()
                }
                state.last, state.last_at = totals, now
                live.update(render(parts, totals, rates))
                await asyncio.sleep(1.0)
    finally:
        await consumer.stop()


def run_pipeline(
    settings: Settings,
    available: set[str],
    config: Path | None,
    rate: float,
    faults: str,
    duration: float | None,
) -> None:
    parts = pipeline_parts(available, rate, faults)
    log_dir = settings.stack.state_dir / "pipeline"
    for part in parts:
        start(part, config, log_dir)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(watch(settings, parts, duration))
    finally:
        stop(parts)
