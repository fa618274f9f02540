"""Rollup lines and the Flux queries behind corrections and hourly/daily rollups.

Choice: hourly and daily rollups are computed by the aggregate stage, not by InfluxDB tasks.
The stage knows which hours and days a written minute window touched (including late
corrections), recomputes exactly those from the stored minute (hour) rollups, and commits
its Kafka offsets only after that, so a crash can never leave an hour stale; a task would
rerun on a timer over a fixed look-back and miss corrections older than it.

Rollups schema (bucket ``rollups``): measurement = device type; tags ``device``,
``kecamatan``, ``metric``, ``type``, ``window`` (``1m``, ``1h``, ``1d``); fields ``count``
(integer), ``min``, ``max``, ``sum``, ``mean``, ``last``; timestamp = window start (a daily
window starts at local midnight, ``aggregate.day_offset_h``). Writing a window again
overwrites it, which makes every correction idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from processors.aggregate.windows import Aggregate, Series
from processors.runtime.influx import flux_string
from processors.runtime.lineprotocol import format_float, line, rollup_tags, series_prefix

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@lru_cache(maxsize=65_536)
def _rollup_prefix(series: Series, window: str) -> str:
    """Measurement and escaped tags of a rollup series: the same for every one of its lines
    (a day of late windows is ~1,440 lines per series, each otherwise escaped anew)."""
    return series_prefix(
        series.type,
        rollup_tags(series.device, series.type, series.kecamatan, series.metric, window),
    )


def rollup_line(series: Series, window: str, start_ms: int, agg: Aggregate) -> str:
    prefix = _rollup_prefix(series, window)
    fields = [
        ("count", f"{agg.count}i"),
        ("last", format_float(agg.last)),
        ("max", format_float(agg.max)),
        ("mean", format_float(agg.mean)),
        ("min", format_float(agg.min)),
        ("sum", format_float(agg.sum)),
    ]
    return line(prefix, fields, start_ms)


def hour_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % HOUR_MS


def day_of(ts_ms: int, offset_ms: int) -> int:
    """Start (UTC ms) of the local day holding ``ts_ms``, for a zone ``offset_ms`` ahead of UTC."""
    local = ts_ms + offset_ms
    return local - local % DAY_MS - offset_ms


def flux_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def raw_points_flux(bucket: str, type_: str, device: str, start_ms: int, stop_ms: int) -> str:
    """The raw telemetry points of one device over [start, stop)."""
    return (
        f"from(bucket: {flux_string(bucket)})"
        f" |> range(start: {flux_time(start_ms)}, stop: {flux_time(stop_ms)})"
        f" |> filter(fn: (r) => r._measurement == {flux_string(type_)}"
        f" and r.device == {flux_string(device)})"
    )


def combine_flux(
    bucket: str,
    source_window: str,
    start_ms: int,
    stop_ms: int,
    devices: Iterable[str] | None = None,
) -> str:
    """Per series, combine the ``source_window`` rollups in [start, stop) (pushed down),
    of ``devices`` only when given."""
    only = ""
    if devices is not None:
        either = " or ".join(f"r.device == {flux_string(d)}" for d in devices)
        only = f" and ({either or 'false'})"
    base = (
        f"from(bucket: {flux_string(bucket)})"
        f" |> range(start: {flux_time(start_ms)}, stop: {flux_time(stop_ms)})"
        f" |> filter(fn: (r) => r.window == {flux_string(source_window)}{only})"
    )
    return (
        f"base = {base}\n"
        "union(tables: [\n"
        '  base |> filter(fn: (r) => r._field == "count" or r._field == "sum") |> sum(),\n'
        '  base |> filter(fn: (r) => r._field == "min") |> min(),\n'
        '  base |> filter(fn: (r) => r._field == "max") |> max(),\n'
        '  base |> filter(fn: (r) => r._field == "last") |> last(),\n'
        "])"
    )


def to_ms(moment: Any) -> int:
    if isinstance(moment, datetime):
        return round(moment.timestamp() * 1000)
    return int(moment)


def points_by_series(
    rows: Iterable[dict[str, Any]],
) -> dict[tuple[str, str, str], dict[int, float]]:
    """Raw telemetry rows as ``{(metric, kecamatan, type): {ts_ms: value}}``."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        value = row.get("_value")
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        key = (str(row["_field"]), str(row.get("kecamatan", "")), str(row["_measurement"]))
        out[key][to_ms(row["_time"])] = float(value)
    return out


def combined_aggregates(rows: Iterable[dict[str, Any]]) -> dict[Series, Aggregate]:
    """Rows of :func:`combine_flux` as one aggregate per series (series with all five fields)."""
    fields: dict[Series, dict[str, float]] = defaultdict(dict)
    last_ts: dict[Series, int] = {}
    for row in rows:
        series = Series(
            device=str(row.get("device", "")),
            metric=str(row.get("metric", "")),
            type=str(row.get("type", row.get("_measurement", ""))),
            kecamatan=str(row.get("kecamatan", "")),
        )
        name = str(row["_field"])
        fields[series][name] = float(row["_value"])
        if name == "last" and row.get("_time") is not None:
            last_ts[series] = to_ms(row["_time"])
    out: dict[Series, Aggregate] = {}
    for series, f in fields.items():
        if {"count", "sum", "min", "max", "last"} <= f.keys() and f["count"] > 0:
            out[series] = Aggregate(
                count=int(f["count"]),
                min=f["min"],
                max=f["max"],
                sum=f["sum"],
                last=f["last"],
                last_ts=last_ts.get(series, 0),
            )
    return out
