"""The public snapshot: the latest value of every public device and metric, judged.

Pure: built from query rows by :func:`build_snapshot`, so statuses, categories and silence
are tested without services. Statuses reuse the dashboards' bands (``deploy.grafana.bands``),
which are the alert rules' own levels (a gauge's registry ``alert_levels`` included), so a
page says "Siaga" exactly when the alert rule would: ISPU for air stations (worst of PM2.5
and PM10), BMKG daily classes for today's rain (since midnight WITA), the river rule's
levels for gauges, the KepMenLH noise limits for noise meters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from deploy.grafana import bands
from deploy.grafana.bands import ISPU_COLOURS, SEVERITY_COLOURS, Band, Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.i18n import Text
from devices.registry import Device
from kotaflow.wire.alerts import Severity
from processors.alerting.model import Rule, RuleSet
from processors.public.publicity import PublicDevice, public_devices, public_rules

ISPU_RANK = tuple(ISPU_COLOURS)
"""Baik < Sedang < Tidak Sehat < Sangat Tidak Sehat < Berbahaya."""
ISPU_METRICS = {"pm25": "PM2.5", "pm10": "PM10"}


@dataclass(frozen=True, slots=True)
class Reading:
    metric: str
    value: float
    unit: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    """A device's class now: the word (both languages), its colour and what it judges."""

    label: Text
    colour: str
    basis: Text


@dataclass(frozen=True, slots=True)
class DeviceState:
    device: Device
    readings: tuple[Reading, ...]
    rain_today_mm: float | None
    last_seen: datetime | None
    silent: bool
    verdict: Verdict | None

    def reading(self, metric: str) -> Reading | None:
        return next((r for r in self.readings if r.metric == metric), None)


@dataclass(frozen=True, slots=True)
class ActiveWarning:
    """A public alert rule firing on a public device (its latest event, not resolved)."""

    rule: str
    title: Text
    level: str
    colour: str
    device: Device
    since: datetime
    """When the alert reached this level (the event's time)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    regency: str
    data_at: datetime
    """When InfluxDB answered the queries this snapshot holds (UTC)."""
    devices: tuple[DeviceState, ...]
    kecamatan: tuple[str, ...]
    """The kecamatan with at least one public device, in registry order."""
    warnings: tuple[ActiveWarning, ...] = ()
    """Most severe first."""

    def in_kecamatan(self, name: str) -> tuple[DeviceState, ...]:
        return tuple(s for s in self.devices if s.device.kecamatan == name)

    def warnings_in(self, name: str) -> tuple[ActiveWarning, ...]:
        return tuple(w for w in self.warnings if w.device.kecamatan == name)


@dataclass(frozen=True, slots=True)
class PublicContext:
    """What a snapshot is judged with: public devices, alert rules, silence limits."""

    regency: str
    devices: tuple[PublicDevice, ...]
    rules: RuleSet
    silent_after_s: Mapping[str, int]
    warning_rules: Mapping[str, Rule]
    """The public alert rules (:func:`processors.public.publicity.is_public_rule`)."""
    alerts_bucket: str = "telemetry"
    alerts_measurement: str = "alerts"

    @classmethod
    def of(cls, ctx: BuildContext) -> PublicContext:
        devices = public_devices(ctx.fleet)
        return cls(
            ctx.fleet.registry.regency,
            devices,
            ctx.rules,
            {p.device.id: ctx.silent_after_s(p.device.id) for p in devices},
            public_rules(ctx.rules),
            ctx.influx.alerts_bucket,
            ctx.influx.alerts_measurement,
        )


def band_of(judged_by: Bands, value: float) -> Band:
    """The band ``value`` falls in (bands ascend; the first starts at minus infinity)."""
    found = judged_by.bands[0]
    for band in judged_by.bands[1:]:
        if band.start is not None and value >= band.start:
            found = band
    return found


def verdict_of(
    rules: RuleSet, device: Device, values: Mapping[str, float], rain_today: float | None
) -> Verdict | None:
    """The device's class from its latest values (None: nothing to judge by)."""
    if device.type == "air_quality":
        return _worst_ispu(rules, values)
    if device.type in ("rain_gauge", "weather") and rain_today is not None:
        daily = bands.rain(rules, "24h")
        return _verdict(daily, rain_today) if daily else None
    metric = {"river_level": "water_level", "noise": "laeq"}.get(device.type)
    if metric is None or metric not in values:
        return None
    judged_by = bands.for_metric(rules, metric, [device.type], device.id)
    return _verdict(judged_by, values[metric]) if judged_by else None


def _verdict(judged_by: Bands, value: float) -> Verdict:
    band = band_of(judged_by, value)
    return Verdict(band.label, band.colour, judged_by.source)


def _worst_ispu(rules: RuleSet, values: Mapping[str, float]) -> Verdict | None:
    worst: tuple[int, Verdict] | None = None
    for metric in ISPU_METRICS:
        judged_by = bands.ispu(rules, metric) if metric in values else None
        if judged_by is None:
            continue
        verdict = _verdict(judged_by, values[metric])
        rank = ISPU_RANK.index(verdict.label.id) if verdict.label.id in ISPU_RANK else 0
        if worst is None or rank > worst[0]:
            worst = (rank, verdict)
    return worst[1] if worst else None


SEVERITY_RANK = tuple(Severity)


def active_warnings(
    public: PublicContext, alerts: Iterable[tuple[str, str, str, str, datetime]]
) -> tuple[ActiveWarning, ...]:
    """Firing alerts ``(rule, device, level, severity, since)`` of public rules on public
    devices (the rest is dropped), most severe and then newest first."""
    devices = {p.device.id: p.device for p in public.devices}
    found = []
    for rule_name, device_id, level, severity, since in alerts:
        rule, device = public.warning_rules.get(rule_name), devices.get(device_id)
        if rule is None or device is None:
            continue
        grade = next((s for s in Severity if s.value == severity), None)
        title = Text(rule.title.get("id", rule.name), rule.title.get("en", rule.name))
        colour = SEVERITY_COLOURS[grade] if grade else "orange"
        rank = SEVERITY_RANK.index(grade) if grade else 0
        found.append((rank, since, ActiveWarning(rule_name, title, level, colour, device, since)))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return tuple(item[2] for item in found)


def build_snapshot(
    public: PublicContext,
    latest: Iterable[tuple[str, str, float, datetime]],
    rain_today: Mapping[str, float],
    data_at: datetime,
    alerts: Iterable[tuple[str, str, str, str, datetime]] = (),
) -> Snapshot:
    """Judge ``latest`` rows ``(device, metric, value, time)`` (other devices' and metrics'
    rows are dropped: only what is public gets in), today's rain per device, and the
    firing alerts (:func:`active_warnings`)."""
    wanted = {p.device.id: p for p in public.devices}
    readings: dict[str, dict[str, Reading]] = {}
    for device_id, metric, value, at in latest:
        spec = wanted.get(device_id)
        if spec is None or metric not in spec.metrics:
            continue
        readings.setdefault(device_id, {})[metric] = Reading(
            metric, value, spec.metrics[metric].unit, at
        )
    states = []
    for spec in public.devices:
        device = spec.device
        mine = readings.get(device.id, {})
        ordered = tuple(mine[m] for m in spec.metrics if m in mine)
        last_seen = max((r.at for r in ordered), default=None)
        limit = timedelta(seconds=public.silent_after_s.get(device.id, 900))
        silent = last_seen is None or data_at - last_seen > limit
        rain = rain_today.get(device.id) if "rain" in spec.metrics else None
        values = {r.metric: r.value for r in ordered}
        verdict = None if silent else verdict_of(public.rules, device, values, rain)
        states.append(DeviceState(device, ordered, rain, last_seen, silent, verdict))
    kecamatan = tuple(dict.fromkeys(s.device.kecamatan for s in states))
    return Snapshot(
        public.regency, data_at, tuple(states), kecamatan, active_warnings(public, alerts)
    )
