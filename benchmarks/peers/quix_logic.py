"""The pure part of the Quix Streams peer: parse a device message, fold it into a window,
format line protocol. Standard library only.

It runs inside the peer's own venv (``benchmarks/peers/quix_app.py``, where neither
kotaflow nor its dependencies exist) and is unit-tested in kotaflow's. What the app needs to
know about the fleet comes in a :data:`DeviceMap` the runner builds with kotaflow's own
escaping (:func:`benchmarks.peers.quix_peer.device_map`), so the peer writes exactly the
schemas of kotaflow's ``store`` and ``aggregate`` stages (``processors/runtime/lineprotocol``):

* telemetry: ``<series prefix> <metric>=<value>,... <event ts ms>``, one line per device
  message entry;
* rollups: ``<series prefix incl. metric and window=1m> count=<n>i,last=..,max=..,mean=..,
  min=..,sum=.. <window start ms>``.

A reading is kept if its device is in the map, its metric is one of its type's and its value
is a finite number within the metric's range; anything else is dropped and counted (the
peer has no dead-letter topic).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, NamedTuple, TypedDict

MINUTE_MS = 60_000


class MetricMeta(TypedDict):
    field: str
    """The metric's escaped field key in the telemetry line."""
    rollup: str
    """The escaped series prefix of its 1-minute rollup lines (``...,window=1m``)."""
    min: float
    max: float


class DeviceMeta(TypedDict):
    telemetry: str
    """The escaped series prefix of its telemetry lines."""
    metrics: dict[str, MetricMeta]


DeviceMap = dict[str, DeviceMeta]
"""Device id -> what the peer needs to write its points."""

SeriesState = list[float]
"""``[count, min, max, sum, last, last_ts]`` of one metric in one window (JSON in RocksDB)."""
WindowState = dict[str, SeriesState]
"""Metric -> its state, for one device's window."""


class Parsed(NamedTuple):
    """One timed entry of a device message, with the readings that passed."""

    ts_ms: int
    values: dict[str, float]
    line: str
    """Its telemetry line ("" when no reading passed)."""
    dropped: int


def event_ms(ts: Any) -> int | None:
    """Epoch ms from a native-JSON ``ts`` (integer ms or RFC 3339), None if it is neither."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float) and math.isfinite(ts):
        return int(ts)
    if isinstance(ts, str):
        try:
            moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
        return round(moment.timestamp() * 1000) if moment.tzinfo else None
    return None


def parse(meta: DeviceMeta | None, payload: Any, received_ms: int) -> list[Parsed]:
    """The entries of one native-JSON payload (``{metric: v}``, ``{"ts", "values"}`` or a
    list of either); an entry without ``ts`` takes ``received_ms``. Unknown devices, bad
    shapes and bad times give an entry with no values (counted, never written)."""
    entries = payload if isinstance(payload, list) else [payload]
    out: list[Parsed] = []
    for entry in entries:
        if not isinstance(entry, dict):
            out.append(Parsed(received_ms, {}, "", 1))
            continue
        if "ts" in entry or "values" in entry:
            ts = event_ms(entry.get("ts"))
            values = entry.get("values")
            if ts is None or len(entry) != 2 or not isinstance(values, dict):
                out.append(Parsed(received_ms, {}, "", max(1, len(entry))))
                continue
        else:
            ts, values = received_ms, entry
        out.append(_readings(meta, values, ts))
    return out


def _readings(meta: DeviceMeta | None, values: dict[str, Any], ts: int) -> Parsed:
    if meta is None:
        return Parsed(ts, {}, "", len(values))
    kept: dict[str, float] = {}
    fields: list[str] = []
    known = meta["metrics"]
    for metric, value in values.items():
        m = known.get(metric)
        if (
            m is None
            or isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not m["min"] <= value <= m["max"]
        ):
            continue
        number = float(value)
        kept[metric] = number
        fields.append(f"{m['field']}={number!r}")
    line = f"{meta['telemetry']} {','.join(fields)} {ts}" if fields else ""
    return Parsed(ts, kept, line, len(values) - len(kept))


def fold(state: WindowState, values: dict[str, float], ts: int) -> WindowState:
    """``state`` with one entry's readings added (in place: the window owns it)."""
    for metric, value in values.items():
        s = state.get(metric)
        if s is None:
            state[metric] = [1, value, value, value, value, ts]
            continue
        s[0] += 1
        if value < s[1]:
            s[1] = value
        if value > s[2]:
            s[2] = value
        s[3] += value
        if ts >= s[5]:
            s[4], s[5] = value, ts
    return state


def rollup_lines(meta: DeviceMeta, start_ms: int, state: WindowState) -> list[str]:
    """One rollup line per metric of a closed window, fields in key order like kotaflow's."""
    lines = []
    for metric, (count, low, high, total, last, _) in state.items():
        m = meta["metrics"].get(metric)
        if m is None or count <= 0:
            continue
        n = int(count)
        fields = (
            f"count={n}i,last={last!r},max={high!r},mean={total / n!r},min={low!r},sum={total!r}"
        )
        lines.append(f"{m['rollup']} {fields} {start_ms}")
    return lines


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % MINUTE_MS
