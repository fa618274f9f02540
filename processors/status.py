"""The pipeline's state, read from what its parts already expose (``kotaflow status``).

No part runs a server for this. Each is judged by what it leaves behind:

* a stage (validate, store, aggregate, alert) by its Kafka consumer group: alive while
  the group has members (a stage that stops leaves it at once; one that dies is dropped
  after the session timeout, 10 s), its lag (end offsets of its input topic minus the
  group's commits), and, for the stages that write to InfluxDB, the last interval with a
  write in the health measurement (``processing.health``);
* the bridge by its Prometheus endpoint (``bridge.metrics_port``);
* a write stage that stalls (``kotaflow_write_blocked{stage,reason}`` on a Prometheus
  endpoint, or ``write_blocked`` in the processes' status files under
  ``<state>/processors/``);
* dead letters per minute by reason over the last minutes, from the dead-letter topic;
* firing alerts from the alert stage's state file, opened read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from kotaflow.kafka import client_options
from kotaflow.settings import Settings
from processors.deadletters.reader import LetterFilter, iso, read_letters, stats
from processors.runtime.kafka_clients import make_admin
from processors.runtime.status_file import read_statuses

DEADLETTER_WINDOW_S = 300
"""Dead letters per minute are counted over this many seconds."""
ALIVE_STATES = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance"})


@dataclass
class PartStatus:
    name: str
    kind: str
    """``bridge``, ``stage`` or ``alert``."""
    healthy: bool
    state: str
    """``alive``, ``stopped``, ``rebalancing``, ``unknown``, ``blocked``."""
    detail: str = ""
    group: str | None = None
    members: int | None = None
    lag: int | None = None
    last_write: str | None = None
    blocked: list[str] = field(default_factory=list)


@dataclass
class PipelineStatus:
    parts: list[PartStatus]
    deadletters_per_minute: dict[str, float]
    firing: list[dict[str, Any]]
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return all(p.healthy for p in self.parts) and not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "parts": [asdict(p) for p in self.parts],
            "deadletters_per_minute": self.deadletters_per_minute,
            "firing_alerts": self.firing,
            "problems": self.problems,
        }


def stage_groups(settings: Settings) -> dict[str, tuple[str, str]]:
    """Stage -> (consumer group, input topic)."""
    p, t = settings.processing, settings.kafka.topics
    return {
        "validate": (p.validation.group_id, t.raw),
        "store": (p.store.group_id, t.readings),
        "aggregate": (p.aggregate.group_id, t.readings),
        "alert": (settings.alerting.group_id, t.readings),
    }


async def pipeline_status(settings: Settings, timeout_s: float = 10.0) -> PipelineStatus:
    """Every part's status; a source that cannot be read is a problem, never a hang."""
    problems: list[str] = []

    async def guarded(what: str, coro: Any, default: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except Exception as err:  # one unreadable source must not hide the others
            problems.append(f"{what}: {type(err).__name__}: {err}")
            return default

    groups, writes, letters, scraped = await asyncio.gather(
        guarded("kafka consumer groups", _groups(settings), None),
        guarded("influxdb health", last_writes(settings), {}),
        guarded(
            "dead-letter topic",
            read_letters(settings, LetterFilter(since_ms=_now_ms() - DEADLETTER_WINDOW_S * 1000)),
            None,
        ),
        guarded("bridge metrics", scrape(settings.bridge.metrics_port), None),
    )
    blocked = _blocked(scraped)
    for stage, reasons in status_file_blocks(settings).items():
        blocked.setdefault(stage, []).extend(r for r in reasons if r not in blocked[stage])
    if settings.metrics_port:
        processors = await guarded("processor metrics", scrape(settings.metrics_port), None)
        blocked.update(_blocked(processors))
    parts = [_bridge(settings, scraped, blocked.get("bridge", []))]
    for stage, (group, _) in stage_groups(settings).items():
        kind = "alert" if stage == "alert" else "stage"
        found = (groups or {}).get(stage)
        parts.append(_stage(stage, kind, group, found, writes.get(stage), blocked.get(stage, [])))
    per_minute: dict[str, float] = {}
    if letters is not None:
        window = stats(letters.letters)
        per_minute = {
            reason: round(n / (DEADLETTER_WINDOW_S / 60), 3)
            for reason, n in window["by_reason"].items()
        }
    return PipelineStatus(parts, per_minute, firing_alerts(settings), problems)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stage(
    name: str,
    kind: str,
    group: str,
    found: tuple[str, int, int | None] | None,
    last_write: int | None,
    blocked: list[str],
) -> PartStatus:
    status = PartStatus(name, kind, False, "unknown", group=group, blocked=blocked)
    if last_write is not None:
        status.last_write = iso(last_write)
    if found is None:
        status.detail = "consumer group not readable"
        return status
    state, members, lag = found
    status.members, status.lag = members, lag
    if members and state in ALIVE_STATES:
        status.state = "alive" if state == "Stable" else "rebalancing"
        status.healthy = True
    else:
        status.state = "stopped"
        status.detail = f"consumer group {state or 'unknown'} with no members"
    if blocked:
        status.state, status.healthy = "blocked", False
        status.detail = "writes blocked: " + ", ".join(blocked)
    return status


def _bridge(settings: Settings, scraped: dict[str, float] | None, blocked: list[str]) -> PartStatus:
    port = settings.bridge.metrics_port
    if not port:
        return PartStatus("bridge", "bridge", True, "unknown", "bridge.metrics_port is 0")
    if scraped is None:
        detail = f"no metrics on 127.0.0.1:{port}: not running"
        return PartStatus("bridge", "bridge", False, "stopped", detail)
    received = scraped.get("kotaflow_bridge_received_total", 0.0)
    in_flight = scraped.get("kotaflow_bridge_in_flight", 0.0)
    detail = f"{int(received)} received, {int(in_flight)} in flight"
    status = PartStatus("bridge", "bridge", not blocked, "alive", detail, blocked=blocked)
    if blocked:
        status.state = "blocked"
    return status


async def _groups(settings: Settings) -> dict[str, tuple[str, int, int | None]]:
    """Stage -> (group state, members, lag)."""
    admin = make_admin(settings, "kotaflow-status")
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, client_id="kotaflow-status"
    )
    await admin.start()
    await consumer.start()
    try:
        out = {}
        for stage, (group, topic) in stage_groups(settings).items():
            (response,) = await admin.describe_consumer_groups([group])
            described = response.to_object()["groups"][0]
            committed = await admin.list_consumer_group_offsets(group)
            lag = await _lag(consumer, topic, committed)
            out[stage] = (str(described["state"]), len(described["members"]), lag)
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def _lag(consumer: AIOKafkaConsumer, topic: str, committed: dict[Any, Any]) -> int | None:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return None
    tps = [TopicPartition(topic, p) for p in partitions]
    ends = await consumer.end_offsets(tps)
    begins = await consumer.beginning_offsets(tps)
    done = {tp: m.offset for tp, m in committed.items() if m is not None}
    return lag_of(ends, begins, done)


def lag_of(
    ends: dict[TopicPartition, int],
    begins: dict[TopicPartition, int],
    committed: dict[TopicPartition, int],
) -> int:
    """Records the group has still to read: from its commit, or from the oldest record
    Kafka still keeps where it has none or its commit is older (retention deleted the rest:
    nobody can read those, so they are no lag)."""
    total = 0
    for tp, end in ends.items():
        start = max(committed.get(tp, -1), begins.get(tp, 0))
        total += max(end - start, 0)
    return total


async def last_writes(settings: Settings) -> dict[str, int]:
    """Stage -> time (ms) of its last health interval with a write, over the last day."""
    from processors.runtime.influx import InfluxSink

    cfg = settings.processing.health
    bucket = cfg.bucket or settings.influxdb.rollups_bucket
    flux = (
        f'from(bucket: "{bucket}") |> range(start: -1d)'
        f' |> filter(fn: (r) => r._measurement == "{cfg.measurement}" and r._field == "writes")'
        ' |> group(columns: ["stage"]) |> last()'
    )
    async with InfluxSink(settings) as influx:
        rows = await influx.query(flux)
    out: dict[str, int] = {}
    for row in rows:
        at = row["_time"]
        ms = int(at.timestamp() * 1000)
        stage = str(row.get("stage", ""))
        out[stage] = max(out.get(stage, 0), ms)
    return out


async def scrape(port: int) -> dict[str, float] | None:
    """The samples of the Prometheus endpoint on 127.0.0.1:``port``; None if none answers.
    Labelled samples are keyed ``name{k=v,...}`` (sorted), plain ones by name."""
    if not port:
        return None
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
            response.raise_for_status()
    except httpx.HTTPError:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def samples_named(
    scraped: dict[str, float] | None, name: str
) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each sample of ``name`` in what :func:`scrape` returned."""
    out = []
    for key, value in (scraped or {}).items():
        base, _, rest = key.partition("{")
        if base == name:
            labels = dict(i.split("=", 1) for i in rest.rstrip("}").split(",") if "=" in i)
            out.append((labels, value))
    return out


def _blocked(scraped: dict[str, float] | None) -> dict[str, list[str]]:
    """Stage -> reasons, from ``kotaflow_write_blocked{stage,reason}`` samples above 0."""
    out: dict[str, list[str]] = {}
    for labels, value in samples_named(scraped, "kotaflow_write_blocked"):
        if value > 0:
            out.setdefault(labels.get("stage", "?"), []).append(labels.get("reason", "?"))
    return out


def status_file_blocks(settings: Settings, now_ms: int | None = None) -> dict[str, list[str]]:
    """Stage -> reasons its writes stall, from the processes' status files
    (``<state>/processors/<instance>.status.json``: ``{"at_ms", "stages": {stage:
    {"write_blocked": null | {"reason", ...}}}}``); a file older than three health intervals
    belongs to a process that died and is ignored."""
    now_ms = _now_ms() if now_ms is None else now_ms
    fresh_ms = 3 * settings.processing.health.interval_s * 1000
    out: dict[str, list[str]] = {}
    for data in read_statuses(settings):
        at_ms = data.get("at_ms", 0)
        if not isinstance(at_ms, int) or now_ms - at_ms > fresh_ms:
            continue
        stages = data.get("stages")
        for stage, entry in (stages if isinstance(stages, dict) else {}).items():
            block = entry.get("write_blocked") if isinstance(entry, dict) else None
            if isinstance(block, dict):
                out.setdefault(stage, []).append(str(block.get("reason", "?")))
    return out


def firing_alerts(settings: Settings) -> list[dict[str, Any]]:
    """The alerts the alert stage holds as firing, read from its state file read-only
    (nothing when it has none yet)."""
    path: Path = settings.alerting.state_path(settings.stack.state_dir)
    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error:
        return []
    with contextlib.closing(db):
        try:
            rows = db.execute("SELECT rule, device, data FROM states ORDER BY rule, device")
            found = [(rule, device, json.loads(raw)) for rule, device, raw in rows]
        except sqlite3.Error:
            return []
    return [
        {"rule": rule, "device": device, "level": state.get("level"), "since": state.get("since")}
        for rule, device, state in found
        if isinstance(state, dict) and state.get("level") is not None
    ]


LINK_FIELDS = ("rssi", "snr", "link_quality")
"""Fields that describe a device's radio link, shown when a device type reports them."""


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    last_seen_ms: int
    battery: float | None = None
    link: dict[str, float] = field(default_factory=dict)


async def last_seen(settings: Settings, days: int = 30) -> dict[str, DeviceSeen]:
    """Device -> when its latest reading is from, with its latest battery and link figures
    (where its type reports them), from the telemetry bucket."""
    from processors.runtime.influx import InfluxSink

    flux = (
        f'from(bucket: "{settings.influxdb.telemetry_bucket}") |> range(start: -{days}d) |> last()'
    )
    async with InfluxSink(settings) as influx:
        rows = await influx.query(flux)
    latest: dict[str, int] = {}
    battery: dict[str, float] = {}
    link: dict[str, dict[str, float]] = {}
    for row in rows:
        device = row.get("device")
        if not isinstance(device, str):
            continue
        ms = int(row["_time"].timestamp() * 1000)
        latest[device] = max(latest.get(device, 0), ms)
        name = row.get("_field")
        if name == "battery":
            battery[device] = float(row["_value"])
        elif name in LINK_FIELDS:
            link.setdefault(device, {})[str(name)] = float(row["_value"])
    return {d: DeviceSeen(ms, battery.get(d), link.get(d, {})) for d, ms in latest.items()}
