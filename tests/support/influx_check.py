"""Reading back what the processors wrote to InfluxDB, and recomputing rollups from it:
:func:`all_rollups_match` checks the 1-minute, hourly and daily rollups of a test's devices
against a recomputation from their raw points."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

from kotaflow.settings import Settings
from processors.aggregate.rollups import HOUR_MS, day_of, hour_of, to_ms
from processors.aggregate.windows import Aggregate, aggregate_points, combine, window_start
from processors.runtime.influx import InfluxSink
from tests.support.polling import wait_for
from tests.support.private_pipeline import device_tag

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


async def stored_times(s: Settings, tag: str, start_ms: int, stop_ms: int) -> set[tuple[str, int]]:
    """(device, ts_ms) of the tagged devices' readings stored with ``start_ms <= ts <
    stop_ms``: a cheap query for a few recent readings."""
    flux = (
        f'from(bucket: "{s.influxdb.telemetry_bucket}")'
        f" |> range(start: time(v: {start_ms * 1_000_000}), stop: time(v: {stop_ms * 1_000_000}))"
        f" |> filter(fn: (r) => r.device =~ /^{tag}-/)"
        ' |> keep(columns: ["_time", "device"])'
    )
    async with InfluxSink(s) as influx:
        rows = await influx.query(flux)
    return {(str(r["device"]), to_ms(r["_time"])) for r in rows}


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


def rolled_up(
    minutes: dict[Point, Aggregate], start_of: Callable[[int], int]
) -> dict[Point, Aggregate]:
    """Minute aggregates combined into the periods ``start_of`` names (hours or days)."""
    parts: dict[Point, list[Aggregate]] = defaultdict(list)
    for (device, metric, start), agg in minutes.items():
        parts[(device, metric, start_of(start))].append(agg)
    return {key: combine(found) for key, found in parts.items()}


async def all_rollups_match(
    s: Settings,
    points: set[Point],
    timeout_s: float = 120,
    devices: Collection[str] | None = None,
) -> None:
    """Wait until telemetry holds ``points`` and 1m, 1h and 1d rollups equal a recomputation.

    ``devices``: only these of the test's devices are compared (others, such as an edge's
    own readings, are left out); default all."""
    tag = device_tag(s)
    offset_ms = int(s.processing.aggregate.day_offset_h * HOUR_MS)

    def mine(found: dict[Point, Any]) -> dict[Point, Any]:
        return found if devices is None else {k: v for k, v in found.items() if k[0] in devices}

    async def stored_all() -> bool:
        return set(mine(await telemetry(s, tag))) == points

    await wait_for(stored_all, timeout_s, "every reading in telemetry")
    minutes = recompute(mine(await telemetry(s, tag)))
    expected = {
        "1m": minutes,
        "1h": rolled_up(minutes, hour_of),
        "1d": rolled_up(minutes, lambda t: day_of(t, offset_ms)),
    }
    for window, want in expected.items():

        async def matches(window: str = window, want: dict[Point, Aggregate] = want) -> bool:
            return not mismatches(want, mine(await rollups(s, tag, window)))

        try:
            await wait_for(matches, timeout_s, f"{window} rollups equal to a recomputation")
        except AssertionError as err:
            bad = mismatches(want, mine(await rollups(s, tag, window)))
            raise AssertionError(f"{err}: {len(bad)} windows differ, e.g. {bad[:3]}") from None
