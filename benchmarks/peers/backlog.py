"""Comparison 2: a Kafka backlog of readings -> raw points + 1-minute rollups in InfluxDB.

One backlog per round (:func:`benchmarks.processors_throughput.backlog`: native JSON from
every enabled device of the packaged registry, one message per device per second, in the
past), drained by each peer in turn with its own consumer group and its own scratch
buckets:

- kotaflow: ``kotaflow process --stage validate --stage store --stage aggregate`` (one
  process, as ``kotaflow process`` runs them), done when all three groups committed all;
- Telegraf: ``kafka_consumer`` (json_v2) -> ``influxdb_v2`` raw + ``basicstats`` 60 s ->
  ``influxdb_v2`` rollups (:func:`benchmarks.peers.telegraf.kafka_to_influx_config`);
- the Quix Streams app: :func:`benchmarks.peers.quix_peer.spawn_quix_app`.

Each is timed by its committed offsets (:mod:`benchmarks.peers.drain`), and judged by the
same queries afterwards (:mod:`benchmarks.peers.windows`): raw readings stored and complete
event-time 1-minute windows. Start -> first InfluxDB write is timed here too (the backlog
waits in Kafka when the peer starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from benchmarks.children import Child, spawn_kotaflow, stop
from benchmarks.e2e_bench import ArrivalPoller
from benchmarks.isolation import child_env, scratch_buckets, write_config
from benchmarks.peers.common import BacklogJob, InfluxTarget, PeerNotRunError, PeerRun
from benchmarks.peers.drain import Drain, KafkaProgress, watch_drain
from benchmarks.peers.mqtt_kafka import telegraf_secrets
from benchmarks.peers.quix_peer import delete_internal_topics, install_quix, spawn_quix_app
from benchmarks.peers.telegraf import InfluxSink, kafka_to_influx_config, spawn_telegraf
from benchmarks.peers.windows import (
    Window,
    backlog_readings,
    expected_windows,
    judge,
)
from benchmarks.processors_throughput import PARTITIONS, backlog, cleanup, fill
from devices.decoding import rfc3339_ms
from kotaflow.kafka import client_options
from kotaflow.settings import Settings
from tests.support.isolated_kafka import isolated

PEERS = ("kotaflow", "telegraf", "quix")
KOTAFLOW_STAGES = ("validate", "store", "aggregate")
PROGRESS_POLL_S = 0.1
JUDGE_TIMEOUT_S = 300.0
"""Counting a backlog's points afterwards may take a while on a busy InfluxDB."""


@dataclass(frozen=True, slots=True)
class Judged:
    """A peer's run and what its buckets held afterwards."""

    run: PeerRun
    stored: int
    rollup_rows: int
    """(device, metric, time) rows with a count in the rollup bucket."""
    complete_windows: int


@dataclass(frozen=True, slots=True)
class BacklogRound:
    messages: int
    readings: int
    windows: int
    """Event-time 1-minute (device, metric) windows the backlog holds."""
    judged: dict[str, Judged]
    not_run: dict[str, str]


def influx_target(settings: Settings) -> InfluxTarget:
    token = settings.influxdb.token
    assert token is not None, "scratch_buckets sets the token"
    return InfluxTarget(
        settings.influxdb.url,
        settings.influxdb.org,
        token.get_secret_value(),
        settings.influxdb.telemetry_bucket,
        settings.influxdb.rollups_bucket,
    )


async def run_round(
    settings: Settings, telegraf: Path, count: int, order: tuple[str, ...]
) -> BacklogRound:
    """Fill one backlog of ``count`` messages; drain it with each peer in ``order``.

    Progress is the messages queryable in the peer's raw bucket; a peer is finished when
    its consumer groups committed the whole backlog (so its rollups are final too)."""
    tag = uuid.uuid4().hex[:8]
    base = isolated(settings, tag, prefix="bench")
    envelopes, readings = backlog(base, count)
    readings_of = list(backlog_readings((e.device_key, e.payload) for e in envelopes))
    expected = expected_windows(readings_of)
    schedule = schedule_of((device, ts) for device, ts, _ in readings_of)
    del readings_of
    work = Path(tempfile.mkdtemp(prefix="kotaflow-peers-"))
    judged: dict[str, Judged] = {}
    not_run: dict[str, str] = {}
    try:
        await fill(base, envelopes)
        del envelopes
        for peer in order:
            job_tag = f"{tag}{peer[0]}"
            async with scratch_buckets(base, job_tag) as mine:
                job = BacklogJob(
                    mine.kafka.bootstrap_servers,
                    mine.kafka.topics.raw,
                    PARTITIONS,
                    f"bench-{tag}-{peer}",
                    count,
                    readings,
                    influx_target(mine),
                    work / peer,
                )
                job.work_dir.mkdir()
                try:
                    run = await _drain(peer, mine, job, telegraf, schedule)
                except PeerNotRunError as why:
                    not_run[peer] = str(why)
                    continue
                judged[peer] = await _judge(mine, run, expected)
    finally:
        await cleanup(base)
        shutil.rmtree(work, ignore_errors=True)
    return BacklogRound(count, readings, len(expected), judged, not_run)


class QueryableProgress:
    """Share of the backlog queryable in the peer's raw bucket, from each device's newest
    point (Flux ``last()`` per series, which InfluxDB answers from its index in a few ms;
    counting points takes seconds while a peer writes at full speed).

    A device's messages sit on one partition and both kotaflow and Telegraf write a
    partition in order, so once a device's newest point has time ``t``, all its earlier
    messages are queryable too (:func:`queryable_messages`)."""

    def __init__(self, settings: Settings, job: BacklogJob, schedule: Schedule) -> None:
        self._poller = ArrivalPoller(settings, [], 0)
        self._flux = f'from(bucket: "{job.influx.raw_bucket}") |> range(start: 0) |> last()'
        self._schedule = schedule
        self._messages = job.messages
        self.newest: dict[str, int] = {}

    async def close(self) -> None:
        await self._poller.close()

    async def share(self) -> float:
        with contextlib.suppress(httpx.HTTPError):
            for row in await self._poller.query(self._flux):
                device = row.get("device") or row.get("kf.device")
                if device and row.get("_time"):
                    ts = rfc3339_ms(row["_time"])
                    self.newest[device] = max(ts, self.newest.get(device, ts))
        return queryable_messages(self.newest, self._schedule) / self._messages

    async def any_written(self) -> bool:
        return bool(self.newest)


Schedule = dict[str, tuple[int, int]]
"""device -> (time of its first backlog message, ms; its messages), one a second."""


def schedule_of(envelopes: Iterable[tuple[str, int]]) -> Schedule:
    """The :data:`Schedule` of ``(device, ts_ms)`` messages."""
    first: dict[str, int] = {}
    count: Counter[str] = Counter()
    for device, ts in envelopes:
        first[device] = min(ts, first.get(device, ts))
        count[device] += 1
    return {device: (first[device], count[device]) for device in first}


def queryable_messages(newest: dict[str, int], schedule: Schedule) -> int:
    """Messages up to each device's newest queryable point (one message a second)."""
    total = 0
    for device, (first_ts, count) in schedule.items():
        ts = newest.get(device)
        if ts is not None and ts >= first_ts:
            total += min(count, (ts - first_ts) // 1000 + 1)
    return total


async def _drain(
    peer: str, settings: Settings, job: BacklogJob, telegraf: Path, schedule: Schedule
) -> PeerRun:
    # Quix's venv is installed (once) before the clock starts: that is not its start-up.
    python = await asyncio.to_thread(install_quix, settings) if peer == "quix" else None
    progress = QueryableProgress(settings, job, schedule)
    started = time.monotonic()
    quix = spawn_quix_app(job, python, settings) if python else None
    child = quix.child if quix else _start(peer, settings, job, telegraf)
    try:
        async with KafkaProgress(client_options(settings)) as kafka:
            drain = await watch_drain(
                [child],
                progress.share,
                started=started,
                first_write=progress.any_written,
                finished=kafka.all_committed(_groups(peer, settings, job)),
                poll_s=PROGRESS_POLL_S,
            )
    finally:
        stop(child.proc)
        await progress.close()
        if quix:
            await delete_internal_topics(settings, job.group)
    run = _peer_run(peer, drain, job, child)
    return replace(run, notes=quix.notes()) if quix else run


def _start(peer: str, settings: Settings, job: BacklogJob, telegraf: Path) -> Child:
    if peer == "kotaflow":
        config = write_config(
            settings.model_copy(update={"metrics_port": 0}), job.work_dir / "kotaflow.yaml"
        )
        argv = ["process"] + [arg for s in KOTAFLOW_STAGES for arg in ("--stage", s)]
        return spawn_kotaflow(
            "kotaflow process", argv, child_env(config), job.work_dir / "process.log"
        )
    influx = job.influx
    sink = InfluxSink(influx.url, influx.org, influx.raw_bucket, influx.rollup_bucket)
    config_text = kafka_to_influx_config(
        job.bootstrap_servers, job.topic, job.group, sink, line_protocol=False
    )
    return spawn_telegraf(
        telegraf, "telegraf kafka-influxdb", config_text, job.work_dir, telegraf_secrets(settings)
    )


def _groups(peer: str, settings: Settings, job: BacklogJob) -> dict[tuple[str, str], int]:
    """(group, topic) -> records it must commit: all three of kotaflow's stages (every
    message is one raw record and one readings record), Telegraf's one group."""
    if peer != "kotaflow":
        return {(job.group, job.topic): job.messages}
    p, t = settings.processing, settings.kafka.topics
    return {
        (p.validation.group_id, t.raw): job.messages,
        (p.store.group_id, t.readings): job.messages,
        (p.aggregate.group_id, t.readings): job.messages,
    }


def _peer_run(peer: str, drain: Drain, job: BacklogJob, child: Child) -> PeerRun:
    cost = child.last_cost
    return PeerRun(
        peer,
        round(job.readings * drain.steady.share),
        drain.steady.wall_s,
        drain.steady.cpu_s,
        drain.total.wall_s,
        drain.total.cpu_s,
        drain.first_write_s,
        (cost,) if cost else (),
    )


async def _judge(settings: Settings, run: PeerRun, expected: Counter[Window]) -> Judged:
    poller = ArrivalPoller(settings, [], 0, timeout_s=JUDGE_TIMEOUT_S)
    try:
        target = influx_target(settings)
        stored, rows, complete = await judge(
            poller.query, target.raw_bucket, target.rollup_bucket, expected
        )
    finally:
        await poller.close()
    return Judged(run, stored, rows, complete)


def figures(round_: BacklogRound, peer: str) -> dict[str, float | None]:
    j = round_.judged[peer]
    return {
        "throughput": j.run.rate,
        "CPU per reading": j.run.cpu_us_per_item,
        "CPU per reading, whole run with start-up": 1e6 * j.run.total_cpu_s / round_.readings,
        "raw readings stored": j.stored,
        "1-minute rollup rows written": j.rollup_rows,
        "complete event-time 1-minute windows": j.complete_windows,
        "complete windows, share of the backlog's": 100 * j.complete_windows / round_.windows,
        "start to first InfluxDB write": j.run.startup_s,
    }
