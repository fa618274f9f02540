"""The Flux the public service runs: three queries per refresh, one per rollup cache miss.

Every query names the public devices (and metrics) explicitly, so a private device's data
cannot reach the service even by mistake in a later step.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from deploy.grafana.flux import alerts_latest, any_of
from processors.alerting.templates import WITA
from processors.public.publicity import PublicDevice
from processors.runtime.influx import flux_string

ROLLUP_WINDOWS = {"1h": timedelta(days=7), "1d": timedelta(days=90)}
"""Rollup window -> how far back the API serves it (bounded answers, bounded cost)."""


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _devices_filter(devices: Iterable[PublicDevice]) -> str:
    chosen = list(devices)
    types = {p.device.type for p in chosen}
    metrics = {m for p in chosen for m in p.metrics}
    return (
        f"filter(fn: (r) => {any_of('_measurement', sorted(types))}"
        f" and {any_of('device', [p.device.id for p in chosen])}"
        f" and {any_of('_field', sorted(metrics))})"
    )


def latest_flux(bucket: str, devices: Collection[PublicDevice], lookback: timedelta) -> str:
    """The last value of every public device and metric within ``lookback``."""
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: -{int(lookback.total_seconds())}s)\n"
        f"  |> {_devices_filter(devices)}\n"
        "  |> last()\n"
        '  |> keep(columns: ["device", "_field", "_value", "_time"])'
    )


def midnight_wita(now: datetime) -> datetime:
    """The start of today in WITA (BMKG's daily rain is per calendar day)."""
    return datetime.combine(now.astimezone(WITA).date(), time(0), tzinfo=WITA)


def rain_today_flux(bucket: str, devices: Collection[PublicDevice], now: datetime) -> str:
    """Rain summed per device since midnight WITA."""
    with_rain = [p for p in devices if "rain" in p.metrics]
    if not with_rain:
        return ""
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {_rfc3339(midnight_wita(now))})\n"
        f"  |> filter(fn: (r) => {any_of('device', [p.device.id for p in with_rain])}"
        ' and r._field == "rain")\n'
        '  |> group(columns: ["device"])\n'
        "  |> sum()\n"
        '  |> keep(columns: ["device", "_value"])'
    )


def rollups_flux(bucket: str, device: PublicDevice, metric: str, window: str) -> str:
    """``window`` (``1h``/``1d``) rollups of one public device's metric, one row per window."""
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: -{int(ROLLUP_WINDOWS[window].total_seconds())}s)\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(device.device.type)}"
        f" and r.device == {flux_string(device.device.id)}"
        f" and r.metric == {flux_string(metric)} and r.window == {flux_string(window)})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> keep(columns: ["_time", "count", "mean", "min", "max", "sum", "last"])\n'
        '  |> sort(columns: ["_time"])'
    )


def alerts_flux(
    bucket: str, measurement: str, devices: Collection[PublicDevice], rules: Collection[str]
) -> str:
    """The firing alerts (latest event per rule and device, as the dashboards read them) of
    the public rules on the public devices."""
    if not rules or not devices:
        return ""
    return (
        alerts_latest(bucket, measurement, firing_only=True)
        + f"\n  |> filter(fn: (r) => {any_of('rule', sorted(rules))}"
        f" and {any_of('device', [p.device.id for p in devices])})"
    )


def alert_rows(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str, str, str, datetime]]:
    return [
        (str(r["rule"]), str(r["device"]), str(r.get("level", "")), str(r["severity"]), r["_time"])
        for r in rows
    ]


def latest_rows(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str, float, datetime]]:
    return [
        (str(r["device"]), str(r["_field"]), float(r["_value"]), r["_time"])
        for r in rows
        if r.get("_value") is not None
    ]


def rain_rows(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    return {str(r["device"]): float(r["_value"]) for r in rows if r.get("_value") is not None}
