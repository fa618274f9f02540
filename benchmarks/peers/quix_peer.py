"""The Quix Streams peer of ``kotaflow bench peers`` (comparison 2: a Kafka backlog of
readings -> raw points + event-time 1-minute rollups in InfluxDB).

:func:`run_quix_backlog` installs Quix Streams 3.28.1 into its cached benchmark-only venv
(:mod:`deploy.local.quixstreams`; never a kotaflow dependency), starts
``benchmarks/peers/quix_app.py`` with that venv's ``python`` as a child process on the job's
topic, consumer group and buckets, and measures it as the contract below says. The app
writes kotaflow's telemetry and rollups schemas (measurement = device type; tags
``device``, ``kecamatan``, ``type``, plus ``metric`` and ``window`` on rollups), from a
device map built here with kotaflow's own line-protocol escaping (:func:`device_map`).

Contract for ``run_quix_backlog(job)`` (agreed with the ``peers`` scenario):

- Input: :class:`benchmarks.peers.common.BacklogJob` - the backlog is already in
  ``job.topic`` (key = device id, value = native JSON ``{"ts": ms, "values": {metric:
  number}}``), ``job.messages`` records, ``job.readings`` metric values.
- The app, at-least-once: consumer group ``job.group`` from the earliest offset, raw points
  to ``job.influx.raw_bucket``, event-time 1-minute tumbling-window rollups per (device,
  metric) to ``job.influx.rollup_bucket``, offsets committed only after the writes they
  cover succeeded (Quix's sink contract). State, config and logs under ``job.work_dir``.
- Done when ``job.group`` has committed all ``job.messages`` records; then the app is
  stopped gracefully. ``steady_s``/``steady_cpu_s`` from the moment the group had
  committed 10 % of the records until it committed all of them (committed offsets read
  every ~100 ms); ``items`` = the readings committed in that span; ``startup_s`` = process
  start -> first point in InfluxDB (polled); ``processes`` = the app's ``ProcessCost``.
- Windows are not counted here: the harness counts complete windows and raw points in the
  buckets with the same query for every peer.
- If Quix Streams cannot run here: :class:`PeerNotRunError`. Internal topics Quix created
  (``changelog__<group>--...``, ``repartition__<group>--...``) are deleted afterwards; the
  harness deletes the job's topic, group and buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.children import Child, stop
from benchmarks.peers.common import BacklogJob, InfluxTarget, PeerNotRunError, PeerRun
from benchmarks.peers.quix_logic import DeviceMap, MetricMeta
from benchmarks.procstats import ProcessCost, cost_of, cpu_seconds
from deploy.local.quixstreams import QUIXSTREAMS_VERSION, ensure_quixstreams
from deploy.local.service import ServiceError
from devices.fleet import Fleet, load_fleet
from kotaflow.settings import load_settings
from processors.runtime.lineprotocol import (
    escape_key,
    rollup_tags,
    series_prefix,
    telemetry_tags,
)

log = logging.getLogger("kotaflow.bench.quix")

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_MODULE = "benchmarks.peers.quix_app"
TOKEN_ENV = "QUIX_PEER_INFLUX_TOKEN"
"""How the app gets its InfluxDB token (not on its command line, where ``ps`` shows it)."""
COMMIT_INTERVAL_S = 1.0
"""Quix's checkpoint interval (its default is 5 s): kotaflow's ``store.flush_interval_s``."""
POLL_S = 0.1
STOP_TIMEOUT_S = 60.0
MIN_RATE = 200.0
"""Messages/s below which a drain is declared stuck (deadline = messages / this + 120 s)."""


def device_map(fleet: Fleet) -> DeviceMap:
    """What the app needs per enabled device: escaped series prefixes and metric ranges."""
    out: DeviceMap = {}
    for device in fleet.registry:
        if not device.enabled:
            continue
        tags = telemetry_tags(device.id, device.type, device.kecamatan)
        metrics: dict[str, MetricMeta] = {}
        for name, m in fleet.metrics_of(device).items():
            rollup = rollup_tags(device.id, device.type, device.kecamatan, name, "1m")
            metrics[name] = MetricMeta(
                field=escape_key(name),
                rollup=series_prefix(device.type, rollup),
                min=m.minimum,
                max=m.maximum,
            )
        out[device.id] = {"telemetry": series_prefix(device.type, tags), "metrics": metrics}
    return out


def app_argv(python: Path, job: BacklogJob, devices: Path, grace_s: float) -> list[str]:
    influx = job.influx
    return [
        str(python),
        "-m",
        APP_MODULE,
        "--devices",
        str(devices),
        "--brokers",
        job.bootstrap_servers,
        "--topic",
        job.topic,
        "--group",
        job.group,
        "--influx-url",
        influx.url,
        "--org",
        influx.org,
        "--raw-bucket",
        influx.raw_bucket,
        "--rollup-bucket",
        influx.rollup_bucket,
        "--state-dir",
        str(job.work_dir / "state"),
        "--grace-s",
        str(grace_s),
        "--commit-interval-s",
        str(COMMIT_INTERVAL_S),
    ]


def configuration_notes(grace_s: float) -> tuple[str, ...]:
    return (
        f"Quix Streams {QUIXSTREAMS_VERSION} (own venv), processing_guarantee=at-least-once, "
        f"commit_interval={COMMIT_INTERVAL_S:g} s (sinks flushed, then offsets committed)",
        f"event-time tumbling_window(60 s, grace {grace_s:g} s) per device, one custom "
        "aggregator for all its metrics, .final() (closing per key); RocksDB state with "
        "its changelog topic",
        "sinks: BatchingSink subclasses writing line protocol with influxdb-client's "
        "synchronous write API, 5,000 lines per request, 429/503 -> SinkBackpressureError",
    )


@dataclass
class _Progress:
    """The committed share of the backlog over time, and the app's CPU at those moments."""

    messages: int
    started: float
    first_write: float | None = None
    at_10: tuple[float, float, int] | None = None
    """(time, app CPU seconds, records committed) when 10 % was first seen committed."""
    at_end: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class QuixApp:
    """The running app of one job: its process (``child.log`` is its stderr), its stdout
    (one JSON line per InfluxDB write: running totals, readings dropped as invalid)."""

    child: Child
    out: Path
    grace_s: float

    def notes(self) -> tuple[str, ...]:
        """Its configuration, and (once stopped) what it reported and how it ended."""
        return configuration_notes(self.grace_s) + run_notes(self.child.proc.returncode, self.out)


def spawn_quix_app(job: BacklogJob) -> QuixApp:
    """Start the app on ``job`` (installing Quix Streams first if it is not cached yet:
    blocking); raise :class:`PeerNotRunError` if it cannot be installed. Stop it with
    :func:`benchmarks.children.stop`, then :func:`delete_internal_topics`."""
    settings = load_settings()
    try:
        python = ensure_quixstreams(settings.stack.cache_dir, lambda line: log.info("%s", line))
    except ServiceError as err:
        raise PeerNotRunError(f"quixstreams not installed: {err}") from err
    grace_s = settings.processing.aggregate.grace_s
    job.work_dir.mkdir(parents=True, exist_ok=True)
    devices = job.work_dir / "devices.json"
    devices.write_text(json.dumps(device_map(load_fleet(settings))), encoding="utf-8")
    out, err_log = job.work_dir / "quix.out", job.work_dir / "quix.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), TOKEN_ENV: job.influx.token}
    with out.open("ab") as stdout, err_log.open("ab") as stderr:
        proc = subprocess.Popen(
            app_argv(python, job, devices, grace_s),
            env=env,
            cwd=job.work_dir,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    return QuixApp(Child("quix app", proc, err_log), out, grace_s)


async def run_quix_backlog(job: BacklogJob) -> PeerRun:
    """Drain ``job``'s backlog with the Quix Streams app; see the module docstring."""
    started = time.monotonic()
    app = await asyncio.to_thread(spawn_quix_app, job)
    try:
        progress = _Progress(job.messages, started)
        try:
            cost = await _watch(job, app.child, progress)
        finally:
            await asyncio.to_thread(stop, app.child.proc, STOP_TIMEOUT_S)
    finally:
        await delete_internal_topics(job.bootstrap_servers, job.group)
    return _result(job, progress, cost, app.notes())


async def _watch(job: BacklogJob, child: Child, progress: _Progress) -> ProcessCost:
    """Poll until the group committed everything; the app's cost just before it stops."""
    deadline = progress.started + job.messages / MIN_RATE + 120
    proc = child.proc
    async with _admin(job.bootstrap_servers) as admin, _influx(job.influx) as http:
        while True:
            child.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Quix app did not drain in time:\n{child.tail()}")
            now, cpu = time.monotonic(), cpu_seconds(proc.pid)
            if progress.first_write is None and await _has_point(http, job.influx):
                progress.first_write = time.monotonic()
            done = await committed(admin, job.group, job.topic)
            if progress.at_10 is None and done >= 0.1 * job.messages:
                progress.at_10 = (now, cpu, done)
            if done >= job.messages:
                progress.at_end = (now, cpu)
                return cost_of(child.name, proc.pid)
            await asyncio.sleep(POLL_S)  # polling offsets with a deadline


def run_notes(returncode: int | None, out: Path) -> tuple[str, ...]:
    """What the app said about its run: readings it dropped (its last sink report), and
    how it stopped when not cleanly."""
    notes = []
    reports = [json.loads(line) for line in _lines(out) if line.startswith("{")]
    raw = [r for r in reports if r.get("sink") == "raw"]
    if raw:
        last = raw[-1]
        notes.append(
            f"the app dropped {last.get('dropped', 0):,} invalid readings and skipped "
            f"{last.get('undecodable', 0):,} records that were not JSON"
        )
    if returncode not in (0, -signal.SIGTERM):
        notes.append(f"the app ended with exit code {returncode} (SIGKILL if it ignored SIGTERM)")
    return tuple(notes)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []


def _result(job: BacklogJob, p: _Progress, cost: ProcessCost, notes: tuple[str, ...]) -> PeerRun:
    assert p.at_10 is not None
    assert p.at_end is not None
    t10, cpu10, done10 = p.at_10
    t_end, cpu_end = p.at_end
    share = (job.messages - done10) / job.messages
    return PeerRun(
        peer="quix",
        items=round(job.readings * share),
        steady_s=t_end - t10,
        steady_cpu_s=cpu_end - cpu10,
        total_s=t_end - p.started,
        total_cpu_s=cost.cpu_s,
        startup_s=None if p.first_write is None else p.first_write - p.started,
        processes=(cost,),
        notes=notes,
    )


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    """Records of ``topic`` the group has committed (the sum of its committed offsets; the
    backlog's topic starts at offset 0)."""
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(max(0, om.offset) for tp, om in offsets.items() if tp.topic == topic)


async def _has_point(http: httpx.AsyncClient, influx: InfluxTarget) -> bool:
    flux = f'from(bucket: "{influx.raw_bucket}") |> range(start: 0) |> limit(n: 1)'
    answer = await http.post("/api/v2/query", params={"org": influx.org}, json={"query": flux})
    answer.raise_for_status()
    return len(answer.text.strip().splitlines()) > 1  # annotated CSV: a header, then rows


async def delete_internal_topics(bootstrap_servers: str, group: str) -> list[str]:
    """Delete the changelog/repartition topics Quix made for ``group``; their names."""
    prefixes = (f"changelog__{group}--", f"repartition__{group}--")
    mine: list[str] = []
    try:
        async with _admin(bootstrap_servers) as admin:
            mine = [t for t in await admin.list_topics() if t.startswith(prefixes)]
            if mine:
                await admin.delete_topics(mine)
    except Exception as err:  # a clean-up reports, never hides the outcome it follows
        log.warning("could not delete the Quix app's topics %s: %r", mine or prefixes, err)
    return mine


@contextlib.asynccontextmanager
async def _admin(bootstrap_servers: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="kotaflow-bench")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def _influx(influx: InfluxTarget) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Token {influx.token}", "Accept": "application/csv"}
    async with httpx.AsyncClient(base_url=influx.url, headers=headers, timeout=30.0) as http:
        yield http
