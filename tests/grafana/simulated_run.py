"""A simulated few hours of the regency, as the pipeline would have written it to InfluxDB.

Values come from the device simulator's signal models (``devices.simulator.signals``), the
lines from the processors' own schema code (``processors.runtime.lineprotocol``,
``processors.aggregate.rollups``), alert events from the alerting engine run over the same readings
(``processors.alerting.engine``, written with ``processors.alerting.sinks.alert_line``) and
health points from ``processors.runtime.health.Health`` - so the dashboards are proven against the
real schemas, not a copy of them. Two devices misbehave on purpose: one goes silent two
hours before the end, one never reports at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.fleet import Fleet
from devices.simulator.climate import Climate
from devices.simulator.signals import Site, sample
from kotaflow.wire.readings import ValidReading
from kotaflow.wire.reasons import Reason
from processors.aggregate.rollups import rollup_line
from processors.aggregate.windows import Series, aggregate_points, window_start
from processors.alerting.engine import Engine
from processors.alerting.model import RuleSet
from processors.alerting.sinks import alert_line
from processors.runtime.health import Health
from processors.runtime.lineprotocol import (
    escape_key,
    format_float,
    line,
    series_prefix,
    telemetry_tags,
)

SEED = 2026
HEALTH_STEP_S = 10
HEALTH_SPAN_S = 1800
STAGE_RATES = {"bridge": (120.0,), "validate": (100.0, 50.0), "store": (150.0,)}
"""Records per second per stage, one entry per process instance (validate runs twice)."""
SILENT_FOR_MS = 2 * 3_600_000


@dataclass
class SimulatedRun:
    now_ms: int
    silent_device: str
    never_device: str
    telemetry: list[str] = field(default_factory=list)
    rollups: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    health: list[str] = field(default_factory=list)
    firing: set[tuple[str, str]] = field(default_factory=set)
    """(rule, device) pairs still firing at the end."""


def simulate(
    fleet: Fleet,
    rules: RuleSet,
    now_ms: int,
    *,
    hours: float,
    alerts_measurement: str,
    health_measurement: str,
) -> SimulatedRun:
    enabled = [d for d in fleet.registry if d.enabled]
    silent = next(d for d in enabled if d.type == "noise")
    never = [d for d in enabled if d.type == "rain_gauge"][-1]
    run = SimulatedRun(now_ms, silent.id, never.id)
    climate = Climate(SEED)
    start_ms = now_ms - int(hours * 3_600_000)
    readings: list[ValidReading] = []
    for device in enabled:
        if device.id == never.id:
            continue
        device_type = fleet.catalogue.types[device.type]
        site = Site.of(device, SEED)
        step_ms = device_type.interval_s * 1000
        stop_ms = now_ms - SILENT_FOR_MS if device.id == silent.id else now_ms
        prefix = series_prefix(
            device.type, telemetry_tags(device.id, device.type, device.kecamatan)
        )
        ts = start_ms - start_ms % step_ms + step_ms
        while ts <= stop_ms:
            values = sample(climate, site, device_type.metrics.values(), ts / 1000, step_ms / 1000)
            fields = [(escape_key(m), format_float(v)) for m, v in values.items()]
            run.telemetry.append(line(prefix, fields, ts))
            for metric, value in values.items():
                unit = device_type.metrics[metric].unit
                reading = ValidReading(
                    device.id, device.type, device.kecamatan, metric, value, unit, ts
                )
                readings.append(reading)
                series = Series(device.id, metric, device.type, device.kecamatan)
                run.rollups.append(
                    rollup_line(series, "1m", window_start(ts), aggregate_points({ts: value}))
                )
            ts += step_ms
    _alerts(run, rules, readings, start_ms, alerts_measurement)
    _health(run, health_measurement)
    return run


def _alerts(
    run: SimulatedRun, rules: RuleSet, readings: list[ValidReading], start_ms: int, measurement: str
) -> None:
    engine = Engine(rules, started_ms=start_ms)
    readings.sort(key=lambda r: r.ts_ms)
    tick_ms = start_ms + 60_000
    events = []
    for reading in readings:
        while tick_ms <= reading.ts_ms:
            events += engine.tick(tick_ms, [])
            tick_ms += 60_000
        events += engine.apply(reading, 0, reading.ts_ms, [])
    while tick_ms <= run.now_ms:
        events += engine.tick(tick_ms, [])
        tick_ms += 60_000
    for event in events:
        if not event.published:
            continue
        title = event.title.get("id", event.rule)
        run.alerts.append(alert_line(measurement, event, title, f"{title}: {event.level}"))
        if event.status == "firing":
            run.firing.add((event.rule, event.device))
        else:
            run.firing.discard((event.rule, event.device))


def _health(run: SimulatedRun, measurement: str) -> None:
    """Each process writes its cumulative counters every 10 s for the last half hour."""
    instances = [
        (Health(f"sim-{stage}-{index}"), stage, rate)
        for stage, rates in STAGE_RATES.items()
        for index, rate in enumerate(rates)
    ]
    reasons = [Reason.OUT_OF_RANGE, Reason.NOT_JSON, Reason.UNKNOWN_DEVICE]
    for step in range(HEALTH_SPAN_S // HEALTH_STEP_S):
        ts = run.now_ms - HEALTH_SPAN_S * 1000 + step * HEALTH_STEP_S * 1000
        for health, stage, rate in instances:
            n = int(rate * HEALTH_STEP_S)
            health.records_in(stage, n)
            health.records_out(stage, n - 2)
            health.deadletter(stage, reasons[step % len(reasons)].value, 2)
            health.lag(stage, 0, 40 + step % 7)
            health.write_latency(stage, 0.004 + 0.001 * (step % 5))
            if step % 30 == 0:  # InfluxDB or Kafka briefly busy
                health.retry(stage)
            run.health += health.lines(measurement, ts)
