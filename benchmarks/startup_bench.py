"""Start to first write: how long a freshly started ``kotaflow process`` and ``kotaflow
bridge`` take until their first output is durable, with input already waiting.

- ``kotaflow process`` (all stages): a few hundred raw messages of the packaged fleet wait
  in the run's private raw topic; measured from spawning the process until the first point
  can be queried in the run's scratch telemetry bucket (polled every :data:`POLL_S`).
- ``kotaflow bridge``: messages wait in the run's persistent MQTT session (made by a first
  start, then published to while it was stopped); measured from spawning the bridge until
  the first record is in the run's raw topic (its end offset, polled every :data:`POLL_S`;
  ``acks=all``, so the record is durable).

Each run's log is read for milestones (first log line = interpreter and imports done,
"stage started", "lease acquired", ...), as seconds after the spawn, so a slow start says
where it lost its time. Needs the local stack. Old against new, side by side::

    uv run python -m benchmarks.startup_bench --tree old=/tmp/kotaflow-old --tree new=. \\
        --rounds 3

Also the ``startup`` scenario of ``kotaflow bench`` (this checkout, one round each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.bridge_bench import PARTITIONS, _topics
from benchmarks.bridge_steady import PacedPublisher
from benchmarks.children import add_tree_option, spawn_kotaflow, stop, trees_of, wait_log
from benchmarks.isolation import child_env, scratch_buckets, wipe_mqtt_session, write_config
from benchmarks.processors_throughput import backlog, cleanup, fill
from benchmarks.report import Figure, ScenarioResult, Target
from kotaflow.settings import Settings, load_settings
from tests.support.isolated_kafka import isolated

POLL_S = 0.02
TIMEOUT_S = 60.0
MESSAGES = 200
TARGET_S = 1.5
PROCESS_MILESTONES = ("stage started", "lease acquired", "Kafka producer started")
BRIDGE_MILESTONES = ("lease acquired", "Kafka producer started", "MQTT connected")


@dataclass(frozen=True, slots=True)
class StartRun:
    """One start: seconds from the spawn to the first durable write, and milestones."""

    command: str
    tree: str
    first_write_s: float
    milestones: dict[str, float] = field(default_factory=dict)


def _spawn(
    argv: Sequence[str], env: dict[str, str], tree: Path | None, log: Path
) -> tuple[subprocess.Popen[bytes], float, float]:
    """(process, monotonic and wall time of the spawn)."""
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    wall, mono = time.time(), time.monotonic()
    proc = spawn_kotaflow(argv[0], argv, env, log, tree=tree).proc
    return proc, mono, wall


def milestones(log: Path, spawned_wall: float, names: Sequence[str]) -> dict[str, float]:
    """Seconds after the spawn of the first log line and of the first line of each name."""
    found: dict[str, float] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        found.setdefault("first log line", at - spawned_wall)
        for name in names:
            if name in str(entry.get("msg", "")):
                found.setdefault(name, at - spawned_wall)
    return found


async def process_start(settings: Settings, name: str, tree: Path | None) -> StartRun:
    """Raw messages waiting; spawn ``kotaflow process``; time to the first stored point."""
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="kotaflow-startup-"))
    base = isolated(settings, tag, prefix="startup")
    async with scratch_buckets(base, tag) as mine:
        mine = mine.model_copy(update={"metrics_port": 0})
        proc: subprocess.Popen[bytes] | None = None
        try:
            envelopes, _ = backlog(mine, MESSAGES)
            await fill(mine, envelopes)
            env = child_env(write_config(mine, work / "kotaflow.yaml"))
            log = work / "process.log"
            async with _influx(mine) as http:
                proc, spawned, wall = _spawn(["process"], env, tree, log)
                await _until(lambda: _any_point(http, mine), proc, log)
                first = time.monotonic() - spawned
            return StartRun(
                "kotaflow process", name, first, milestones(log, wall, PROCESS_MILESTONES)
            )
        finally:
            if proc is not None:
                stop(proc)
            await cleanup(mine)
            shutil.rmtree(work, ignore_errors=True)


async def bridge_start(settings: Settings, name: str, tree: Path | None) -> StartRun:
    """Messages waiting in the bridge's session; spawn it; time to the first Kafka record."""
    rid = uuid.uuid4().hex[:8]
    raw, dead = f"kotaflow.raw.startup-{rid}", f"kotaflow.deadletter.startup-{rid}"
    client_id = f"bench-startup-{rid}"
    work = Path(tempfile.mkdtemp(prefix="kotaflow-startup-"))
    env = {
        **os.environ,
        "KOTAFLOW_KAFKA__TOPICS__RAW": raw,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": dead,
        "KOTAFLOW_BRIDGE__CLIENT_ID": client_id,
        "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "300",
        "KOTAFLOW_BRIDGE__METRICS_PORT": "0",
    }
    await _topics(settings, create=[raw, dead])
    proc: subprocess.Popen[bytes] | None = None
    try:
        first_log = work / "first.log"
        proc, _, _ = _spawn(["bridge"], env, tree, first_log)  # makes the session
        await asyncio.to_thread(wait_log, first_log, "MQTT subscribed", proc, TIMEOUT_S)
        await asyncio.to_thread(stop, proc)
        publisher = PacedPublisher(settings, rid, work / "pub")
        await asyncio.to_thread(publisher.run, 100.0, 0.2)
        publisher.close()
        log = work / "bridge.log"
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
        await consumer.start()
        try:
            parts = [TopicPartition(raw, p) for p in range(PARTITIONS)]
            before: dict[TopicPartition, int] = await consumer.end_offsets(parts)
            proc, spawned, wall = _spawn(["bridge"], env, tree, log)

            async def in_kafka() -> bool:
                ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
                return sum(ends.values()) > sum(before.values())

            await _until(in_kafka, proc, log)
            first = time.monotonic() - spawned
        finally:
            await consumer.stop()
        return StartRun("kotaflow bridge", name, first, milestones(log, wall, BRIDGE_MILESTONES))
    finally:
        if proc is not None:
            await asyncio.to_thread(stop, proc)
        wipe_mqtt_session(settings, client_id)
        await _topics(settings, delete=[raw, dead])
        shutil.rmtree(work, ignore_errors=True)


def _influx(settings: Settings) -> httpx.AsyncClient:
    token = settings.influxdb.token
    assert token is not None, "scratch_buckets sets the token"
    return httpx.AsyncClient(
        base_url=settings.influxdb.url,
        headers={"Authorization": f"Token {token.get_secret_value()}", "Accept": "application/csv"},
        timeout=5.0,
    )


async def _any_point(http: httpx.AsyncClient, settings: Settings) -> bool:
    flux = (
        f'from(bucket: "{settings.influxdb.telemetry_bucket}") |> range(start: -30d) |> limit(n: 1)'
    )
    try:
        response = await http.post(
            "/api/v2/query",
            params={"org": settings.influxdb.org},
            json={"query": flux, "type": "flux", "dialect": {"annotations": [], "header": True}},
        )
    except httpx.HTTPError:
        return False
    return response.is_success and len([x for x in response.text.splitlines() if x.strip()]) > 1


async def _until(
    check: Callable[[], Awaitable[bool]],
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = TIMEOUT_S,
) -> None:
    """Poll ``check()`` every :data:`POLL_S` until true; raise if ``proc`` exits first or
    time runs out."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = await asyncio.to_thread(log.read_text, encoding="utf-8", errors="replace")
            raise RuntimeError(f"no first write within {timeout_s:.0f} s:\n{tail[-2000:]}")
        await asyncio.sleep(POLL_S)


async def run_rounds(
    settings: Settings, trees: list[tuple[str, Path | None]], rounds: int
) -> list[StartRun]:
    """Every tree once per round and command, the order alternating between rounds."""
    runs: list[StartRun] = []
    for r in range(rounds):
        order = trees if r % 2 == 0 else list(reversed(trees))
        for name, tree in order:
            runs.append(await process_start(settings, name, tree))
            runs.append(await bridge_start(settings, name, tree))
            for run in runs[-2:]:
                steps = ", ".join(f"{k} {v:.2f}" for k, v in run.milestones.items())
                first = run.first_write_s
                print(
                    f"round {r + 1} {name:>6} {run.command:<17} first write {first:5.2f} s"
                    f"  ({steps})",
                    flush=True,
                )
    return runs


def _median(runs: list[StartRun], command: str, tree: str) -> float | None:
    values = [r.first_write_s for r in runs if r.command == command and r.tree == tree]
    return statistics.median(values) if values else None


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``startup`` scenario of ``kotaflow bench`` (this checkout)."""
    runs = await run_rounds(settings, [("this", None)], 1)
    figures = [Figure(f"{r.command}: start to first write", r.first_write_s, "s") for r in runs]
    return ScenarioResult(
        "startup",
        quick,
        {"messages_waiting": MESSAGES, "poll_s": POLL_S},
        throughput=figures,
        targets=[
            Target(f"{r.command}: start to first write", r.first_write_s, TARGET_S, "s", "<=")
            for r in runs
        ],
        notes=[
            f"{r.command}: " + ", ".join(f"{k} at {v:.2f} s" for k, v in r.milestones.items())
            for r in runs
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_option(parser, "kotaflow")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    trees = trees_of(args.tree, "this")
    runs = asyncio.run(run_rounds(load_settings(), trees, args.rounds))
    print(f"median of {args.rounds} round(s), seconds from spawn to first durable write:")
    for command in ("kotaflow process", "kotaflow bridge"):
        cells = [_median(runs, command, name) for name, _ in trees]
        text = "  ".join(f"{name} {c:5.2f}" for (name, _), c in zip(trees, cells, strict=True) if c)
        print(f"  {command:<17} {text}")


if __name__ == "__main__":
    main()
