"""Reading back what the processors wrote to InfluxDB, and recomputing rollups from it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kotaflow.settings import Settings
from processors.aggregate.rollups import to_ms
from processors.aggregate.windows import Aggregate, aggregate_points, window_start
from processors.runtime.influx import InfluxSink

Point = tuple[str, str, int]
"""(device, metric, ts_ms)"""


async def telemetry(s: Settings, tag: str) -> dict[Point, float]:
    flux = (
        f'from(bucket: "{s.influxdb.telemetry_bucket}") |> range(start: -8d, stop: 1h)'
        f" |> filter(fn: (r) => r.device =~ /^{tag}-/)"
    )
    async with InfluxSink(s) as influx:
        rows = await influx.query(flux)
    return {(r["device"], r["_field"], to_ms(r["_time"])): float(r["_value"]) for r in rows}


ROLLUP_FIELDS = frozenset({"count", "min", "max", "sum", "mean", "last"})


async def rollups(s: Settings, tag: str, window: str) -> dict[Point, dict[str, float]]:
    """The stored ``window`` rollups of the tagged devices, complete windows only.

    InfluxDB stores each field as its own series, so a query racing the write of a window
    can see some of its fields and not yet the others: such a window counts as not written.
    """
    flux = (
        f'from(bucket: "{s.influxdb.rollups_bucket}") |> range(start: -8d, stop: 1h)'
        f' |> filter(fn: (r) => r.window == "{window}" and r.device =~ /^{tag}-/)'
    )
    async with InfluxSink(s) as influx:
        rows = await influx.query(flux)
    out: dict[Point, dict[str, float]] = defaultdict(dict)
    for r in rows:
        out[(r["device"], r["metric"], to_ms(r["_time"]))][r["_field"]] = float(r["_value"])
    return {key: fields for key, fields in out.items() if fields.keys() >= ROLLUP_FIELDS}


def recompute(points: dict[Point, float]) -> dict[Point, Aggregate]:
    """1-minute aggregates recomputed from raw points."""
    windows: dict[Point, dict[int, float]] = defaultdict(dict)
    for (device, metric, ts), value in points.items():
        windows[(device, metric, window_start(ts))][ts] = value
    return {key: aggregate_points(p) for key, p in windows.items()}


def as_fields(agg: Aggregate) -> dict[str, float]:
    return {
        "count": float(agg.count),
        "min": agg.min,
        "max": agg.max,
        "sum": agg.sum,
        "mean": agg.mean,
        "last": agg.last,
    }


def mismatches(expected: dict[Point, Aggregate], found: dict[Point, dict[str, float]]) -> list[Any]:
    """Windows whose stored rollup differs from the recomputation (floats to 1e-9)."""
    bad: list[Any] = []
    for key in expected.keys() | found.keys():
        want = as_fields(expected[key]) if key in expected else None
        got = found.get(key)
        if want is None or got is None or want.keys() != got.keys():
            bad.append((key, want, got))
            continue
        if any(abs(want[f] - got[f]) > 1e-9 * max(1.0, abs(want[f])) for f in want):
            bad.append((key, want, got))
    return bad
