"""Grafana's two rewriting steps on a Flux query, reproduced so queries run without Grafana.

1. Template variables (Grafana's frontend, ``templateSrv.replace``): ``$name``, ``${name}``
   and ``${name:regex}``. The ``regex`` format escapes ``\\ ^ $ * + ? . ( ) | [ ] { } /``;
   a variable set to *All* with a custom all value inserts that value as it is.
2. Flux macros (Grafana's backend, ``pkg/tsdb/influxdb/flux/macros.go``): every
   ``<word>.<word>`` whose second word is ``timeRangeStart`` / ``timeRangeStop`` (RFC 3339
   UTC), ``windowPeriod`` (a Go duration), ``defaultBucket``, ``bucket`` or ``organization``
   (quoted strings) is replaced wherever it appears; then ``$__interval_ms`` and
   ``$__interval``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::(\w+))?\}|(\w+))")
_MACRO = re.compile(r"([a-zA-Z]+)\.([a-zA-Z]+)")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


@dataclass(frozen=True, slots=True)
class AllValue:
    """A variable set to *All*: its custom all value, inserted without escaping."""

    raw: str


@dataclass(frozen=True, slots=True)
class QueryWindow:
    """What Grafana derives from the dashboard's time picker and the panel width."""

    start: datetime
    stop: datetime
    interval: timedelta
    default_bucket: str
    organization: str


def escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda found: "\\" + found.group(0), value)


def replace_variables(query: str, values: Mapping[str, str | AllValue]) -> str:
    """Step 1: template variables; unknown names are left alone, as Grafana does."""

    def substitute(found: re.Match[str]) -> str:
        name = found.group(1) or found.group(3)
        fmt = found.group(2)
        if name not in values:
            return found.group(0)
        value = values[name]
        if isinstance(value, AllValue):
            return value.raw
        return escape_regex(value) if fmt == "regex" else value

    return _VARIABLE.sub(substitute, query)


_NICE_INTERVALS_MS = (
    # (raw interval up to, rounded to): Grafana's roundInterval table, in milliseconds
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000),
    (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (32_400_000, 21_600_000), (86_400_000, 43_200_000), (604_800_000, 86_400_000),
)  # fmt: skip


def grafana_interval(span: timedelta, max_points: int, min_interval: timedelta) -> timedelta:
    """The interval Grafana gives a panel: ``span / max_points`` rounded to a nice value
    (its ``roundInterval`` table), never below the data source's minimum interval."""
    raw_ms = span.total_seconds() * 1000 / max_points
    rounded = next((nice for upto, nice in _NICE_INTERVALS_MS if raw_ms <= upto), 604_800_000)
    return max(timedelta(milliseconds=rounded), min_interval)


def go_duration(delta: timedelta) -> str:
    """``time.Duration.String()``: ``1m0s``, ``30s``, ``2h0m0s``, ``500ms``."""
    total_ms = round(delta.total_seconds() * 1000)
    if total_ms < 1000:
        return f"{total_ms}ms" if total_ms else "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = rest / 1000
    text = f"{seconds:g}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def rfc3339(moment: datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    base = utc.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def replace_macros(query: str, window: QueryWindow) -> str:
    """Step 2: the backend's Flux macros, as ``macros.go`` applies them."""
    replacements = {
        "timeRangeStart": rfc3339(window.start),
        "timeRangeStop": rfc3339(window.stop),
        "windowPeriod": go_duration(window.interval),
        "bucket": f'"{window.default_bucket}"',
        "defaultBucket": f'"{window.default_bucket}"',
        "organization": f'"{window.organization}"',
    }
    for found in _MACRO.findall(query):
        whole, key = f"{found[0]}.{found[1]}", found[1]
        if key in replacements:
            query = query.replace(whole, replacements[key])
    interval_ms = round(window.interval.total_seconds() * 1000)
    query = query.replace("$__interval_ms", str(interval_ms))
    return query.replace("$__interval", go_duration(window.interval))


def interpolate(query: str, values: Mapping[str, str | AllValue], window: QueryWindow) -> str:
    return replace_macros(replace_variables(query, values), window)


def stray_macros(query: str) -> list[str]:
    """``x.<macro>`` uses other than ``v.<macro>``: Grafana would rewrite them too."""
    keys = {"timeRangeStart", "timeRangeStop", "windowPeriod", "bucket", "defaultBucket"}
    keys.add("organization")
    return [f"{a}.{b}" for a, b in _MACRO.findall(query) if b in keys and a != "v"]
