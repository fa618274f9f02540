"""Pipeline health: counters every stage updates, exported two ways.

* Prometheus (``prometheus-client``, one registry per process, served on
  ``settings.metrics_port`` when it is not 0): ``kotaflow_records_in_total``,
  ``kotaflow_records_out_total``, ``kotaflow_deadletter_total{reason}``,
  ``kotaflow_duplicates_total{kind}``, ``kotaflow_consumer_lag``,
  ``kotaflow_write_seconds`` (histogram), ``kotaflow_write_retries_total``,
  ``kotaflow_pending_corrections``, ``kotaflow_corrected_windows_total``,
  ``kotaflow_correction_queries_total``, ``kotaflow_write_blocked{reason}`` (1 while the
  stage's InfluxDB writes stall, see ``processors/runtime/write_block.py``),
  ``kotaflow_fleet_reloads_total{result}``; every series has a ``stage`` label.
* InfluxDB: every ``processing.health.interval_s`` the same figures as line protocol in
  measurement ``kotaflow_pipeline`` (bucket ``rollups`` unless set), tags ``stage``,
  ``instance`` (and ``reason`` for dead-letter counts). Counters are cumulative per process
  instance; dashboards take ``derivative()`` for rates.

* :meth:`Health.status`: the same state as a small JSON-able mapping per stage (blocked or
  not, why, since when, what to fix); ``kotaflow process`` writes it to
  ``<state>/processors/<instance>.status.json`` every health interval (and at once when a
  stage stalls or resumes), for ``kotaflow status`` and other tools.

``records_in`` counts Kafka records consumed (a readings record v2 holds a message's
readings); ``records_out`` counts what a stage made: readings for validate, points for
store, rollup rows for aggregate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from processors.runtime.lineprotocol import format_float, line, series_prefix


@dataclass
class _Snapshot:
    counters: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    deadletters: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    write_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    blocked: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    """stage -> (reason, since epoch ms, what to fix) while its writes stall."""


class Health:
    """All health figures of one process (every stage it runs)."""

    def __init__(self, instance: str, registry: CollectorRegistry | None = None) -> None:
        self.instance = instance
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._in = Counter("kotaflow_records_in", "Records consumed", ["stage"], registry=r)
        self._out = Counter("kotaflow_records_out", "Records/points written", ["stage"], registry=r)
        self._dead = Counter(
            "kotaflow_deadletter", "Records dead-lettered", ["stage", "reason"], registry=r
        )
        self._dups = Counter(
            "kotaflow_duplicates", "Duplicate readings dropped", ["stage", "kind"], registry=r
        )
        self._lag = Gauge(
            "kotaflow_consumer_lag", "Records behind the end", ["stage", "partition"], registry=r
        )
        self._write = Histogram(
            "kotaflow_write_seconds",
            "Duration of one output write (Kafka batch or InfluxDB POST)",
            ["stage"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self._retries = Counter(
            "kotaflow_write_retries", "Output writes retried", ["stage"], registry=r
        )
        self._pending = Gauge(
            "kotaflow_pending_corrections", "Late windows waiting", ["stage"], registry=r
        )
        self._reloads = Counter(
            "kotaflow_fleet_reloads",
            "Registry/catalogue changes taken up (accepted) or refused as invalid (refused)",
            ["stage", "result"],
            registry=r,
        )
        self._corrected = Counter(
            "kotaflow_corrected_windows",
            "Late 1-minute windows recomputed from raw points",
            ["stage"],
            registry=r,
        )
        self._raw_queries = Counter(
            "kotaflow_correction_queries",
            "Raw-point queries behind corrections",
            ["stage"],
            registry=r,
        )
        self._blocked = Gauge(
            "kotaflow_write_blocked",
            "1 while the stage's InfluxDB writes stall (not the data's fault), by reason",
            ["stage", "reason"],
            registry=r,
        )
        self._snap = _Snapshot()
        self.on_status_change: list[Callable[[], None]] = []
        """Called when a stage stalls or resumes (the runner rewrites the status file)."""

    def records_in(self, stage: str, n: int) -> None:
        self._in.labels(stage).inc(n)
        self._snap.counters[(stage, "records_in")] += n

    def records_out(self, stage: str, n: int) -> None:
        self._out.labels(stage).inc(n)
        self._snap.counters[(stage, "records_out")] += n

    def deadletter(self, stage: str, reason: str, n: int = 1) -> None:
        self._dead.labels(stage, reason).inc(n)
        self._snap.deadletters[(stage, reason)] += n
        self._snap.counters[(stage, "deadletter")] += n

    def duplicate(self, stage: str, kind: str, n: int = 1) -> None:
        self._dups.labels(stage, kind).inc(n)
        self._snap.counters[(stage, f"{kind}s")] += n

    def fleet_reload(self, stage: str, accepted: bool) -> None:
        result = "accepted" if accepted else "refused"
        self._reloads.labels(stage, result).inc()
        self._snap.counters[(stage, f"fleet_reloads_{result}")] += 1

    def retry(self, stage: str) -> None:
        self._retries.labels(stage).inc()
        self._snap.counters[(stage, "write_retries")] += 1

    def lag(self, stage: str, partition: int, behind: int) -> None:
        self._lag.labels(stage, str(partition)).set(behind)
        self._snap.lag[(stage, partition)] = behind

    def forget_partition(self, stage: str, partition: int) -> None:
        self._snap.lag.pop((stage, partition), None)
        self._lag.labels(stage, str(partition)).set(0)

    def write_latency(self, stage: str, seconds: float) -> None:
        self._write.labels(stage).observe(seconds)
        self._snap.write_s[stage].append(seconds)

    def pending_corrections(self, stage: str, n: int) -> None:
        self._pending.labels(stage).set(n)
        self._snap.counters[(stage, "pending_corrections")] = n

    def corrected(self, stage: str, windows: int, queries: int) -> None:
        self._corrected.labels(stage).inc(windows)
        self._raw_queries.labels(stage).inc(queries)
        self._snap.counters[(stage, "corrected_windows")] += windows
        self._snap.counters[(stage, "correction_queries")] += queries

    def write_blocked(self, stage: str, reason: str | None, fix: str = "") -> None:
        """``stage``'s writes stall for ``reason`` (None: they flow again)."""
        previous = self._snap.blocked.pop(stage, None)
        if previous is not None:
            self._blocked.labels(stage, previous[0]).set(0)
        if reason is not None:
            since = previous[1] if previous else time.time_ns() // 1_000_000
            self._snap.blocked[stage] = (reason, since, fix)
            self._blocked.labels(stage, reason).set(1)
        self._snap.counters[(stage, "write_blocked")] = 0 if reason is None else 1
        for notify in self.on_status_change:
            notify()

    def blocked(self, stage: str) -> str | None:
        """Why ``stage``'s writes stall now, or None."""
        found = self._snap.blocked.get(stage)
        return found[0] if found else None

    def status(self) -> dict[str, Any]:
        """Every stage's state for other tools: the status hook of ``kotaflow status``."""
        snap = self._snap
        stages = {s for s, _ in snap.counters} | set(snap.blocked)
        out: dict[str, Any] = {}
        for stage in sorted(stages):
            entry: dict[str, Any] = {
                name: int(v) for (s, name), v in sorted(snap.counters.items()) if s == stage
            }
            blocked = snap.blocked.get(stage)
            entry["write_blocked"] = None
            if blocked is not None:
                reason, since_ms, fix = blocked
                entry["write_blocked"] = {"reason": reason, "since_ms": since_ms, "fix": fix}
            out[stage] = entry
        return {"instance": self.instance, "at_ms": time.time_ns() // 1_000_000, "stages": out}

    def value(self, stage: str, name: str) -> float:
        """A cumulative figure (``records_in``, ``deadletter``, ...), for tests and views."""
        return self._snap.counters.get((stage, name), 0.0)

    def lines(self, measurement: str, now_ms: int) -> list[str]:
        """The current figures as line protocol; resets the write-latency sample."""
        snap = self._snap
        stages = {s for s, _ in snap.counters} | {s for s, _ in snap.lag} | set(snap.write_s)
        out: list[str] = []
        for stage in sorted(stages):
            fields = [
                (name, f"{int(v)}i") for (s, name), v in sorted(snap.counters.items()) if s == stage
            ]
            lags = [v for (s, _), v in snap.lag.items() if s == stage]
            if lags:
                fields.append(("consumer_lag", f"{sum(lags)}i"))
            samples = snap.write_s.pop(stage, [])
            if samples:
                samples.sort()
                fields += [
                    ("write_ms_p50", format_float(1000 * samples[len(samples) // 2])),
                    ("write_ms_max", format_float(1000 * samples[-1])),
                    ("writes", f"{len(samples)}i"),
                ]
            if fields:
                tags = {"instance": self.instance, "stage": stage}
                out.append(line(series_prefix(measurement, tags), fields, now_ms))
        for stage, (reason, _, _) in sorted(snap.blocked.items()):
            tags = {"instance": self.instance, "reason": reason, "stage": stage}
            out.append(line(series_prefix(measurement, tags), [("write_blocked", "1i")], now_ms))
        for (stage, reason), v in sorted(snap.deadletters.items()):
            tags = {"instance": self.instance, "reason": reason, "stage": stage}
            out.append(
                line(series_prefix(measurement, tags), [("deadletter", f"{int(v)}i")], now_ms)
            )
        return out
