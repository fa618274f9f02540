"""What a backlog should leave in InfluxDB, and what each peer did leave there.

Judged the same way for every peer: raw readings are counted in the raw bucket; a
*complete event-time 1-minute window* is a (device, metric, UTC minute) of the backlog
whose rollup row is stamped with that minute's start and counts exactly the backlog's
readings in it. kotaflow's rollups (tags ``device``/``metric``, field ``count``) and
Telegraf's ``basicstats`` (field ``<metric>_count``, device tag ``device`` or ``kf.device``)
are both read. A rollup of a wall-clock period, or of a window still open, does not count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from devices.decoding import rfc3339_ms

MINUTE_MS = 60_000
Window = tuple[str, str, int]
"""(device, metric, window start in ms since the epoch)."""
Query = Callable[[str], Awaitable[list[dict[str, str]]]]
"""Runs a Flux query, gives its rows as column -> text."""


def expected_windows(readings: Iterable[tuple[str, int, Iterable[str]]]) -> Counter[Window]:
    """Readings per 1-minute window of ``(device, ts_ms, metrics)`` items."""
    counts: Counter[Window] = Counter()
    for device, ts_ms, metrics in readings:
        start = ts_ms - ts_ms % MINUTE_MS
        for metric in metrics:
            counts[device, metric, start] += 1
    return counts


def backlog_readings(
    records: Iterable[tuple[str, bytes]],
) -> Iterable[tuple[str, int, list[str]]]:
    """``(device, ts_ms, metrics)`` of native-JSON records ``(device, payload)``."""
    for device, payload in records:
        body: Any = json.loads(payload)
        for entry in body if isinstance(body, list) else [body]:
            yield device, int(entry["ts"]), list(entry["values"])


def found_windows(rows: Iterable[Mapping[str, str]]) -> dict[Window, int]:
    """Rollup rows (``_time``, ``_field``, ``_value`` and device/metric tags) as windows."""
    found: dict[Window, int] = {}
    for row in rows:
        field = row.get("_field", "")
        metric = row.get("metric") or (field[: -len("_count")] if field != "count" else "")
        device = row.get("device") or row.get("kf.device") or ""
        if not metric or not device or not row.get("_value"):
            continue
        found[device, metric, rfc3339_ms(row["_time"])] = round(float(row["_value"]))
    return found


def complete_windows(expected: Mapping[Window, int], found: Mapping[Window, int]) -> int:
    """Windows of ``expected`` that ``found`` has, with the same count."""
    return sum(1 for window, count in expected.items() if found.get(window) == count)


def rollup_flux(bucket: str) -> str:
    return f"""import "strings"
from(bucket: "{bucket}") |> range(start: 0)
  |> filter(fn: (r) => r._field == "count" or strings.hasSuffix(v: r._field, suffix: "_count"))
  |> filter(fn: (r) => not exists r.window or r.window == "1m")
  |> keep(columns: ["_time", "_field", "_value", "device", "metric", "kf.device"])
  |> group()"""


def raw_count_flux(bucket: str, metrics: Iterable[str]) -> str:
    """Values of ``metrics`` fields per series (summed by :func:`stored_readings`), in a
    form InfluxDB pushes down to storage (``contains()`` in the filter would not be)."""
    fields = " or ".join(f"r._field == {json.dumps(m)}" for m in sorted(set(metrics)))
    return f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => {fields}) |> count()'


async def stored_readings(query: Query, bucket: str, metrics: Iterable[str]) -> int:
    """Raw readings (metric values) in ``bucket``."""
    rows = await query(raw_count_flux(bucket, metrics))
    return sum(int(row["_value"]) for row in rows if row.get("_value"))


async def judge(
    query: Query, raw_bucket: str, rollup_bucket: str, expected: Counter[Window]
) -> tuple[int, int, int]:
    """(raw readings stored, 1-minute rollup rows, complete event-time windows) of one
    peer's buckets."""
    stored = await stored_readings(query, raw_bucket, {metric for _, metric, _ in expected})
    found = found_windows(await query(rollup_flux(rollup_bucket)))
    return stored, len(found), complete_windows(expected, found)
