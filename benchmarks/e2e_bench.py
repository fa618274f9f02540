"""End to end: simulated devices -> Mosquitto -> bridge -> Kafka -> process -> InfluxDB.

At a fixed offered rate (default 2,000 readings/s), how long from a reading's device
timestamp until it can be queried in InfluxDB, and does everything arrive?

Method:

1. Isolation: a copy of the registry whose device ids, DevEUIs and TTS ids carry this
   run's tag (other pipelines on the broker dead-letter them as unknown devices instead of
   storing them), private Kafka topics and consumer groups, a private bridge session and
   share group, scratch InfluxDB buckets (:mod:`benchmarks.isolation`).
2. ``kotaflow bridge`` and ``kotaflow process`` (every stage) start as child processes;
   warm-up messages are sent until one is in InfluxDB (consumer groups assigned).
3. ``kotaflow simulate --rate R --duration D --manifest FILE --no-trace`` (mixed formats,
   no faults, no MQTT user properties: what field devices send) publishes; meanwhile this
   process asks InfluxDB every :data:`POLL_S` for the newest point time of each device.
   Each device's readings sit on one Kafka partition and the store stage writes a
   partition's batches in order, so once a device's newest point has time ``t``, every
   earlier reading of that device is queryable too. A reading's latency is the time of
   the first poll that covered it minus its device timestamp (from the manifest): an upper
   bound, coarse by up to one poll interval plus the query time.
4. At the end the readings in the bucket are counted against what the simulator sent.
   With ``deadletters=True`` (the end-to-end test with faults) the run's dead-letter topic
   is read too, before it is deleted, until every message the manifest says must be
   refused has a dead letter (or :data:`SETTLE_S` passed).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.children import Child, ready_or_stopped, spawn_kotaflow, stop
from benchmarks.isolation import (
    child_env,
    scratch_buckets,
    wipe_mqtt_session,
    write_config,
)
from benchmarks.processors_throughput import cleanup
from benchmarks.procstats import ProcessCost, cpu_seconds
from benchmarks.report import Figure, Latency, ScenarioResult, Target
from deploy.local.kafka_topics import ensure_topics
from devices.decoding import rfc3339_ms
from devices.registry import PACKAGED_REGISTRY
from devices.simulator import pool
from devices.simulator.manifest import payload_hash, read_manifest
from devices.simulator.options import FormatChoice, SimulationOptions
from devices.simulator.runner import run_simulation
from devices.simulator.stream import DUPLICATE, OK
from kotaflow.kafka import client_options
from kotaflow.settings import Settings, load_settings
from kotaflow.wire.deadletter import DeadLetter
from tests.support.isolated_kafka import isolated

RATE = 2_000.0
QUICK_DURATION_S, FULL_DURATION_S = 15.0, 60.0
POLL_S = 0.1
SETTLE_S = 30.0
"""After the simulator stops, wait at most this long for the last readings to arrive."""
WINDOW_S = 30.0
"""A poll looks back at most this far (readings slower than that are found at the end)."""
PARTITIONS = {"raw": 6, "readings": 6, "deadletter": 3}


@dataclass
class E2ERun:
    rate: float
    duration_s: float
    summary: dict[str, Any]
    """The simulator's summary (``kotaflow.simulate.summary/1``)."""
    latencies_ms: list[float]
    expected: int
    """Valid readings sent (each must be stored)."""
    stored: int
    """Readings in the bucket with a device time in the measured run."""
    never_seen: int
    """Valid readings no poll saw before the end (slower than the settle time, or lost)."""
    processes: list[ProcessCost] = field(default_factory=list)
    polls: int = 0
    tag: str = ""
    """The run's tag: in its device ids, DevEUIs and TTS ids, so in its MQTT topics."""
    manifest: list[dict[str, Any]] = field(default_factory=list)
    """The simulator's manifest lines (only with ``measure(..., deadletters=True)``)."""
    deadletters: list[DeadLetter] = field(default_factory=list)
    """Every record of the run's dead-letter topic (only with ``deadletters=True``): the
    faulty messages, and other pipelines' traffic the run's bridge also received."""
    arrivals: list[tuple[int, float | None]] = field(default_factory=list)
    """(device time, latency or None) of every valid reading, in the manifest's order."""
    run_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each pipeline process used from the simulator's start until the last
    reading arrived (start-up and warm-up left out)."""


class ArrivalPoller:
    """Asks InfluxDB for the newest point time of each device, and remembers when."""

    def __init__(
        self, settings: Settings, devices: Iterable[str], start_ms: int, timeout_s: float = 10.0
    ) -> None:
        token = settings.influxdb.token
        assert token is not None, "scratch_buckets sets the token"
        self._http = httpx.AsyncClient(
            base_url=settings.influxdb.url,
            headers={
                "Authorization": f"Token {token.get_secret_value()}",
                "Accept": "application/csv",
            },
            timeout=timeout_s,
        )
        self._org = settings.influxdb.org
        self._bucket = settings.influxdb.telemetry_bucket
        self.newest: dict[str, int] = dict.fromkeys(devices, start_ms)
        self.seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
        """device -> [(newest point time, poll time)], both ms, growing."""
        self.polls = 0

    async def close(self) -> None:
        await self._http.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, POLL_S - (time.monotonic() - began)))

    async def poll(self) -> None:
        polled_ms = time.time_ns() // 1_000_000
        lower = max(min(self.newest.values()) + 1, polled_ms - int(WINDOW_S * 1000))
        flux = (
            f'from(bucket: "{self._bucket}") |> range(start: time(v: {lower * 1_000_000}))'
            ' |> keep(columns: ["_time", "device"]) |> group(columns: ["device"])'
            ' |> max(column: "_time")'
        )
        rows = await self.query(flux)
        self.polls += 1
        for row in rows:
            device, ts_ms = row["device"], rfc3339_ms(row["_time"])
            if device in self.newest and ts_ms > self.newest[device]:
                self.newest[device] = ts_ms
                self.seen[device].append((ts_ms, polled_ms))

    async def query(self, flux: str) -> list[dict[str, str]]:
        """Rows of a Flux query as column -> text (annotated CSV without annotations)."""
        response = await self._http.post(
            "/api/v2/query",
            params={"org": self._org},
            json={"query": flux, "type": "flux", "dialect": {"annotations": [], "header": True}},
        )
        response.raise_for_status()
        lines = [line for line in response.text.splitlines() if line.strip()]
        if not lines:
            return []
        header = lines[0].split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]

    def caught_up(self, last_ts: dict[str, int]) -> bool:
        """Whether every device's newest point has reached ``last_ts`` (device -> ms)."""
        return all(self.newest.get(d, 0) >= ts for d, ts in last_ts.items())

    def latency_ms(self, device: str, ts_ms: int) -> float | None:
        """Time from ``ts_ms`` to the first poll that saw ``device`` at or past it."""
        seen = self.seen.get(device, [])
        i = bisect.bisect_left(seen, (ts_ms, -1))
        return float(seen[i][1] - ts_ms) if i < len(seen) else None

    async def count_since(self, start_ms: int) -> int:
        flux = (
            f'from(bucket: "{self._bucket}") |> range(start: time(v: {start_ms * 1_000_000}))'
            " |> group() |> count()"
        )
        rows = await self.query(flux)
        return int(rows[0]["_value"]) if rows else 0


def bench_registry(settings: Settings, tag: str, path: Path) -> list[str]:
    """Write a copy of the registry with this run's ids; return the enabled device ids."""
    source = settings.registry_file or PACKAGED_REGISTRY
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    enabled = []
    for index, device in enumerate(data["devices"]):
        original = device["id"]
        device["id"] = f"b{tag}-{original}"
        if device.get("dev_eui"):
            device["dev_eui"] = f"{tag}{index:0{16 - len(tag)}x}"
        if device.get("tts_device_id"):
            device["tts_device_id"] = f"b{tag}-{device['tts_device_id']}"[:36]
        if device.get("enabled", True):
            enabled.append(device["id"])
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return enabled


Pipeline = Callable[[Settings, dict[str, str], Path], Awaitable[list[Child]]]
"""Starts the pipeline under test for a run: ``(run settings, child environment, scratch
folder) -> its processes``, returned once it is subscribed and ready for readings. The
run's MQTT session to use is ``settings.bridge.client_id`` (wiped at the end)."""


async def kotaflow_pipeline(settings: Settings, env: dict[str, str], work: Path) -> list[Child]:
    """``kotaflow bridge`` and ``kotaflow process`` (every stage), the default pipeline."""
    bridge = spawn_kotaflow("kotaflow bridge", ["bridge"], env, work / "bridge.log")
    process = spawn_kotaflow("kotaflow process", ["process"], env, work / "process.log")
    return await asyncio.to_thread(
        ready_or_stopped, [bridge, process], bridge, "MQTT subscribed", 120
    )


def expected_readings(manifest: Path) -> list[tuple[str, int]]:
    """(device, device time) of every reading the pipeline must store."""
    out = []
    with manifest.open(encoding="utf-8") as lines:
        for line in lines:
            message = json.loads(line)
            out += [(message["device"], v["ts"]) for v in message["values"] if v["expect"] == "ok"]
    return out


async def read_deadletters(
    settings: Settings, wanted: set[str], timeout_s: float = SETTLE_S
) -> list[DeadLetter]:
    """Every record of the run's dead-letter topic, read until each payload hash in
    ``wanted`` (:func:`devices.simulator.manifest.payload_hash`) has a dead letter or
    ``timeout_s`` passed, then on to the topic's end at that moment."""
    topic = settings.kafka.topics.deadletter
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS["deadletter"])]
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        letters: list[DeadLetter] = []
        missing = set(wanted)
        deadline = time.monotonic() + timeout_s
        ends: dict[TopicPartition, int] | None = None
        async with asyncio.timeout(timeout_s + 60):
            while True:
                batch = await consumer.getmany(*partitions, timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        letter = DeadLetter.from_value(record.value or b"")
                        letters.append(letter)
                        missing.discard(payload_hash(letter.payload))
                if ends is None and (not missing or time.monotonic() > deadline):
                    ends = await consumer.end_offsets(partitions)
                if ends is not None:
                    at = {tp: await consumer.position(tp) for tp in partitions}
                    if all(at[tp] >= end for tp, end in ends.items()):
                        return letters
    finally:
        await consumer.stop()


async def measure(
    settings: Settings,
    rate: float,
    duration_s: float,
    faults: str | None = None,
    deadletters: bool = False,
    during: Callable[[Settings], Coroutine[Any, Any, None]] | None = None,
    inspect: Callable[[Settings, str], Awaitable[None]] | None = None,
    logs_to: Path | None = None,
    settle_s: float = SETTLE_S,
    pipeline: Pipeline = kotaflow_pipeline,
    payload_format: str | None = None,
) -> E2ERun:
    """Simulated devices -> bridge -> process -> InfluxDB; ``faults`` as ``simulate --faults``;
    ``deadletters``: also keep the manifest and read the dead-letter topic before it goes.

    ``during(run settings)`` runs beside the simulator (a fault to inject; awaited before
    the run settles); ``inspect(run settings, device id prefix)`` runs once everything
    arrived, before the run's buckets and topics are deleted (checks of what was stored).
    ``logs_to``: a folder the children's logs are copied to at the end (for a test's report);
    ``settle_s``: how long the last readings may take to arrive after the simulator ends;
    ``pipeline``: what is measured (default kotaflow's bridge and process);
    ``payload_format``: ``simulate --format`` (default mixed)."""
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="kotaflow-e2e-"))
    base = isolated(settings, tag, prefix="bench")
    children: list[Child] = []
    async with scratch_buckets(base, tag) as buckets:
        devices = bench_registry(buckets, tag, work / "registry.yaml")  # before settings use it
        bridge_cfg = buckets.bridge.model_copy(
            update={
                "client_id": f"bench-e2e-{tag}",
                "session_expiry_s": 300,
                "metrics_port": 0,
                # 41 devices carrying 2,000 readings/s send ~10 messages/s each: far over
                # the per-device limit meant for field devices (5/s), which would
                # dead-letter a quarter of them.
                "rate_per_s": None,
            }
        )
        registry = work / "registry.yaml"
        mine = buckets.model_copy(
            update={"registry_file": registry, "metrics_port": 0, "bridge": bridge_cfg}
        )
        env = child_env(write_config(mine, work / "kotaflow.yaml"))
        topics = mine.kafka.topics
        wanted = {getattr(topics, name): n for name, n in PARTITIONS.items()}
        poller: ArrivalPoller | None = None
        stop_polling = asyncio.Event()
        polling: asyncio.Task[None] | None = None
        try:
            await asyncio.to_thread(ensure_topics, mine.kafka, wanted, lambda _: None)
            piped = await pipeline(mine, env, work)
            children += piped
            await _warm_up(mine, children, devices)
            start_ms = time.time_ns() // 1_000_000
            poller = ArrivalPoller(mine, devices, start_ms)
            polling = asyncio.create_task(poller.run(stop_polling))
            manifest = work / "manifest.jsonl"
            argv = ["simulate", "--rate", str(rate), "--duration", str(duration_s)]
            argv += ["--manifest", str(manifest), "--json", "--no-trace", "--seed", "7"]
            if faults:
                argv += ["--faults", faults]
            if payload_format:
                argv += ["--format", payload_format]
            cpu_start = {c.name: cpu_seconds(c.proc.pid) for c in piped}
            summary_file = work / "summary.json"
            sim = spawn_kotaflow(
                "kotaflow simulate", argv, env, work / "simulate.log", stdout=summary_file
            )
            children.append(sim)
            injected = asyncio.create_task(during(mine)) if during else None
            try:
                await _run_to_end(sim, children)
            finally:
                if injected is not None:
                    await injected
            expected = expected_readings(manifest)
            last_ts: dict[str, int] = {}
            for device, ts in expected:
                last_ts[device] = max(ts, last_ts.get(device, 0))
            deadline = time.monotonic() + settle_s
            while not poller.caught_up(last_ts) and time.monotonic() < deadline:
                for child in piped:
                    child.check_alive()
                    child.sample()
                await asyncio.sleep(POLL_S)
            costs = [c.sample() for c in children]
            run_cpu = {c.name: c.last_cost.cpu_s - cpu_start[c.name] for c in piped if c.last_cost}
            stop_polling.set()
            await polling
            stored = await poller.count_since(start_ms)
            latencies = [poller.latency_ms(d, ts) for d, ts in expected]
            if inspect is not None:
                await inspect(mine, f"b{tag}")
            lines: list[dict[str, Any]] = []
            letters: list[DeadLetter] = []
            if deadletters:
                lines = list(read_manifest(manifest))
                rejected = {m["payload_b2b"] for m in lines if _rejects_something(m)}
                letters = await read_deadletters(mine, rejected)
            return E2ERun(
                rate,
                duration_s,
                json.loads(summary_file.read_text(encoding="utf-8")),
                [x for x in latencies if x is not None],
                len(expected),
                stored,
                sum(1 for x in latencies if x is None),
                [c for c in costs if c is not None],
                poller.polls,
                tag,
                lines,
                letters,
                [(ts, latency) for (_, ts), latency in zip(expected, latencies, strict=True)],
                run_cpu,
            )
        finally:
            stop_polling.set()
            if polling is not None:
                await asyncio.gather(polling, return_exceptions=True)
            for child in reversed(children):
                stop(child.proc)
            if poller is not None:
                await poller.close()
            wipe_mqtt_session(mine, bridge_cfg.client_id)
            await cleanup(mine)
            _remove_work(work, logs_to)


def _remove_work(work: Path, logs_to: Path | None) -> None:
    """Delete the run's scratch folder, its children's logs copied to ``logs_to`` first."""
    if logs_to is not None:
        for log in work.glob("*.log"):
            shutil.copy(log, logs_to / log.name)
    shutil.rmtree(work, ignore_errors=True)


def _rejects_something(message: dict[str, Any]) -> bool:
    """Whether a manifest message carries a value the pipeline must refuse."""
    return any(v["expect"] not in (OK, DUPLICATE) for v in message["values"])


async def _warm_up(settings: Settings, children: list[Child], devices: list[str]) -> None:
    """Send a few readings until one is in InfluxDB: every stage has its partitions.

    The run's devices have no broker accounts of their own by design, so the pool's warning
    about it (once per round) is quieted here; the simulator's own log still has it.
    """
    poller = ArrivalPoller(settings, devices, 0)
    deadline = time.monotonic() + 120
    options = SimulationOptions(rate=200, count=20, format=FormatChoice.NATIVE, trace=False, seed=3)
    level = pool.log.level
    pool.log.setLevel(logging.ERROR)
    try:
        while True:
            for child in children:
                child.check_alive()
            await run_simulation(settings, options)
            if await poller.count_since(0):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("warm-up readings did not reach InfluxDB within 120 s")
            await asyncio.sleep(1.0)
    finally:
        pool.log.setLevel(level)
        await poller.close()


async def _run_to_end(sim: Child, children: list[Child]) -> None:
    """Wait for the simulator to finish, sampling every child's cost."""
    while sim.proc.poll() is None:
        for child in children:
            if child is not sim:
                child.check_alive()
            child.sample()
        await asyncio.sleep(0.2)
    if sim.proc.returncode != 0:
        raise RuntimeError(f"the simulator failed:\n{sim.tail()}")


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``e2e`` scenario of ``kotaflow bench``."""
    duration = QUICK_DURATION_S if quick else FULL_DURATION_S
    run = await measure(settings, RATE, duration)
    return result(run, quick)


def result(run: E2ERun, quick: bool) -> ScenarioResult:
    sent_rate = float(run.summary.get("achieved_rate", 0.0))
    stored_pct = 100 * run.stored / run.expected if run.expected else 0.0
    latency = Latency.of("device time -> queryable in InfluxDB", run.latencies_ms)
    targets = [
        Target("latency", latency.p99_ms if latency else None, 1000, "ms", "<="),
        Target("readings stored / valid readings sent", stored_pct, 100, "%"),
    ]
    limits = {"kotaflow bridge": 100, "kotaflow process": 200}
    targets += [
        Target(p.name, p.peak_rss_mb, limits[p.name], "MB", "<=")
        for p in run.processes
        if p.name in limits
    ]
    return ScenarioResult(
        "e2e",
        quick,
        {"rate": run.rate, "duration_s": run.duration_s, "format": "mixed", "poll_s": POLL_S},
        throughput=[
            Figure("offered (simulator, achieved)", sent_rate, "readings/s"),
            Figure("stored in InfluxDB", run.stored / run.duration_s, "readings/s"),
            Figure("readings stored / valid readings sent", stored_pct, "%"),
        ],
        latency=latency,
        processes=run.processes,
        targets=targets,
        notes=[
            f"{run.expected:,} valid readings sent, {run.stored:,} stored, "
            f"{run.never_seen:,} not seen within {SETTLE_S:.0f} s after the run",
            f"latency is an upper bound: InfluxDB polled every {POLL_S * 1000:.0f} ms "
            f"({run.polls} polls); CPU and RSS over each process's life",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=RATE, help="readings per second")
    parser.add_argument("--duration", type=float, default=FULL_DURATION_S, help="seconds")
    args = parser.parse_args()
    run = asyncio.run(measure(load_settings(), args.rate, args.duration))
    print(json.dumps(result(run, quick=False).to_json(), indent=2))


if __name__ == "__main__":
    main()
