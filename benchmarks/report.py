"""One scenario's result: the JSON written to the results directory and the table printed.

JSON schema ``kotaflow.bench.result/1`` (one file per scenario run,
``<results>/<started, UTC>-<scenario>.json``), so runs can be compared with ``jq`` or a
notebook::

    {"schema": "kotaflow.bench.result/1", "scenario": "bridge", "quick": true,
     "started_at": "2026-11-28T02:30:00Z", "duration_s": 41.2,
     "machine": {"cpus": 2, "load_avg_start": [6.1, 7.0, 7.2], "load_avg_end": [...],
                 "python_speed_start": 2400, "python_speed_end": 2350,
                 "python": "3.11.7", "platform": "Linux-..."},
     "parameters": {"messages": 20000, ...},
     "throughput": [{"name": "bridge drain", "value": 12000.0, "unit": "msg/s"}, ...],
     "latency": {"what": "...", "samples": 120, "p50_ms": 8.0, "p95_ms": 24.0,
                 "p99_ms": 40.0, "max_ms": 51.0} | null,
     "processes": [{"name": "kotaflow bridge", "peak_rss_mb": 71.2, "cpu_s": 3.1}, ...],
     "targets": [{"name": "bridge vs mosquitto_sub", "value": 85.0, "limit": 80.0,
                  "unit": "%", "comparison": ">=", "met": true}, ...],
     "notes": ["..."],
     "sections": [{"key": "...", "title": "...", "columns": ["figure", ...],
                   "rows": [["...", ...]], "notes": ["..."], "data": {...}}]}

``python_speed_*`` is :func:`benchmarks.calibration.python_speed`: this shared VM's speed
changes by a third from one hour to the next, so compare throughput per unit of it.
``sections`` (optional, additive) are further tables a scenario prints under its main one
(``kotaflow bench peers``: one per comparison), as printed, with their numbers in ``data``.
``latency`` is null where the scenario has no per-item latency (a backlog drain); a
target's ``value`` and ``met`` are null when it could not be measured.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.calibration import python_speed
from benchmarks.procstats import ProcessCost

SCHEMA = "kotaflow.bench.result/1"


@dataclass(frozen=True, slots=True)
class Figure:
    """A throughput figure: what was measured, its value and unit."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of a latency sample (nearest-rank), in milliseconds."""

    what: str
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, what: str, samples_ms: Sequence[float]) -> Latency | None:
        """The percentiles of ``samples_ms``; None when there are none."""
        if not samples_ms:
            return None
        ordered = sorted(samples_ms)
        return cls(
            what,
            len(ordered),
            percentile(ordered, 50),
            percentile(ordered, 95),
            percentile(ordered, 99),
            ordered[-1],
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sample."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal from the benchmark issue, and whether this run met it."""

    name: str
    value: float | None
    limit: float
    unit: str
    comparison: str = ">="
    """``>=`` (at least ``limit``) or ``<=`` (at most)."""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.comparison == ">=" else self.value <= self.limit


@dataclass
class ScenarioResult:
    scenario: str
    quick: bool
    parameters: dict[str, Any]
    throughput: list[Figure] = field(default_factory=list)
    latency: Latency | None = None
    processes: list[ProcessCost] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[dict[str, Any]] = field(default_factory=list)
    """Further tables, printed under the main one (see the module docstring)."""
    started_at: str = ""
    duration_s: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "scenario": self.scenario,
            "quick": self.quick,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 2),
            "machine": self.machine,
            "parameters": self.parameters,
            "throughput": [asdict(f) for f in self.throughput],
            "latency": asdict(self.latency) if self.latency is not None else None,
            "processes": [asdict(p) for p in self.processes],
            "targets": [{**asdict(t), "met": t.met} for t in self.targets],
            "notes": list(self.notes),
            **({"sections": self.sections} if self.sections else {}),
        }


class Stopwatch:
    """Stamps a result with when it started, how long it took and the machine's load."""

    def __init__(self) -> None:
        self._started = datetime.now(UTC)
        self._load_start = os.getloadavg()
        self._speed_start = python_speed()

    def stamp(self, result: ScenarioResult, elapsed_s: float) -> ScenarioResult:
        result.started_at = self._started.strftime("%Y-%m-%dT%H:%M:%SZ")
        result.duration_s = elapsed_s
        result.machine = {
            "cpus": os.cpu_count(),
            "load_avg_start": [round(x, 2) for x in self._load_start],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "python_speed_start": round(self._speed_start),
            "python_speed_end": round(python_speed()),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        }
        return result


def write_result(result: ScenarioResult, directory: Path) -> Path:
    """Write ``result`` as ``<directory>/<started>-<scenario>.json``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = result.started_at.replace(":", "").replace("-", "")
    path = directory / f"{stamp}-{result.scenario}.json"
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def _number(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f} %"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def render(result: ScenarioResult) -> Any:
    """One rich table: throughput, latency, each process's cost, targets met or missed."""
    from rich.table import Table

    load = result.machine.get("load_avg_start", [float("nan")])[0]
    speed = result.machine.get("python_speed_start", float("nan"))
    table = Table(
        title=f"kotaflow bench {result.scenario}{' --quick' if result.quick else ''}",
        caption=(
            f"{result.machine.get('cpus')} CPUs, load average {load:.1f} and Python speed "
            f"index {speed:,.0f} at start; {result.duration_s:.0f} s"
        ),
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    for fig in result.throughput:
        table.add_row(fig.name, _number(fig.value, fig.unit), _target_cell(result, fig.name))
    if result.latency is not None:
        lat = result.latency
        table.add_row(
            f"latency p50 / p95 / p99 ({lat.what}, n={lat.samples})",
            f"{lat.p50_ms:,.0f} / {lat.p95_ms:,.0f} / {lat.p99_ms:,.0f} ms",
            _target_cell(result, "latency"),
        )
    for proc in result.processes:
        table.add_row(
            f"{proc.name}: peak RSS, CPU",
            f"{proc.peak_rss_mb:.0f} MB, {proc.cpu_s:.1f} s",
            _target_cell(result, proc.name),
        )
    shown = {f.name for f in result.throughput} | {p.name for p in result.processes}
    for target in result.targets:
        if target.name not in shown and target.name != "latency":
            value = "-" if target.value is None else _number(target.value, target.unit)
            table.add_row(target.name, value, _target_text(target))
    for note in result.notes:
        table.add_row(f"[dim]{note}[/dim]", "", "")
    if not result.sections:
        return table
    from rich.console import Group

    return Group(table, *(_section_table(s) for s in result.sections))


def _section_table(section: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=section["title"],
        caption="\n".join(section.get("notes", [])),
        caption_justify="left",
    )
    for i, column in enumerate(section["columns"]):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in section["rows"]:
        table.add_row(*row)
    return table


def _target_cell(result: ScenarioResult, name: str) -> str:
    return "".join(_target_text(t) for t in result.targets if t.name == name)


def _target_text(target: Target) -> str:
    sign = "≥" if target.comparison == ">=" else "≤"
    mark = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "[yellow]n/a[/yellow]"}
    return f"{sign} {_number(target.limit, target.unit)} {mark[target.met]}"
