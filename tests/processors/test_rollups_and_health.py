"""Rollup lines, day boundaries, Flux text and health figures (pure, no services)."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.aggregate.rollups import (
    HOUR_MS,
    combined_aggregates,
    day_of,
    flux_time,
    hour_of,
    points_by_series,
    rollup_line,
)
from processors.aggregate.windows import Aggregate, Series
from processors.runtime.health import Health
from processors.runtime.influx import flux_string

S = Series("rtg-aq-01", "pm25", "air_quality", "Langke Rembong")
T0 = 1_764_300_000_000


def test_rollup_line_overwrites_by_series_and_window_start() -> None:
    agg = Aggregate(count=3, min=1.0, max=9.0, sum=15.0, last=5.0, last_ts=T0 + 3000)
    assert rollup_line(S, "1m", T0, agg) == (
        "air_quality,device=rtg-aq-01,kecamatan=Langke\\ Rembong,metric=pm25,type=air_quality,"
        f"window=1m count=3i,last=5.0,max=9.0,mean=5.0,min=1.0,sum=15.0 {T0}"
    )


def test_daily_rollups_follow_local_midnight_in_wita() -> None:
    wita = 8 * HOUR_MS
    local_morning = int(datetime(2026, 11, 28, 1, 0, tzinfo=UTC).timestamp() * 1000)  # 09:00
    start = day_of(local_morning, wita)
    assert datetime.fromtimestamp(start / 1000, UTC) == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert day_of(start, wita) == start
    assert day_of(start - 1, wita) == start - 24 * HOUR_MS
    assert hour_of(local_morning + 59 * 60_000) == local_morning


def test_flux_literals_are_escaped() -> None:
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'
    assert flux_time(T0 + 7) == "2025-11-28T03:20:00.007Z"


def test_rows_become_points_and_combined_aggregates() -> None:
    when = datetime.fromtimestamp((T0 + 1000) / 1000, UTC)
    raw = [
        {
            "_field": "pm25",
            "kecamatan": "K",
            "_measurement": "air_quality",
            "_time": when,
            "_value": 4.5,
        },
        {
            "_field": "pm25",
            "kecamatan": "K",
            "_measurement": "air_quality",
            "_time": when,
            "_value": "not a number",
        },
    ]
    assert points_by_series(raw) == {("pm25", "K", "air_quality"): {T0 + 1000: 4.5}}
    tags = {"device": "d", "metric": "m", "type": "t", "kecamatan": "k", "_measurement": "t"}
    rows = [
        {**tags, "_field": "count", "_value": 4},
        {**tags, "_field": "sum", "_value": 10.0},
        {**tags, "_field": "min", "_value": 1.0},
        {**tags, "_field": "max", "_value": 4.0},
        {**tags, "_field": "last", "_value": 2.0, "_time": when},
        {**tags, "device": "partial", "_field": "count", "_value": 1},
    ]
    ((series, agg),) = combined_aggregates(rows).items()
    assert series == Series("d", "m", "t", "k")
    assert agg == Aggregate(4, 1.0, 4.0, 10.0, 2.0, T0 + 1000)


def test_health_lines_carry_counters_lag_latency_and_deadletters_by_reason() -> None:
    h = Health("host-1")
    h.records_in("validate", 10)
    h.records_out("validate", 8)
    h.deadletter("validate", "not_json", 2)
    h.lag("validate", 0, 5)
    h.lag("validate", 1, 7)
    h.write_latency("validate", 0.010)
    h.write_latency("validate", 0.030)
    lines = h.lines("kotaflow_pipeline", 1000)
    assert lines[0].startswith("kotaflow_pipeline,instance=host-1,stage=validate ")
    assert "records_in=10i" in lines[0]
    assert "deadletter=2i" in lines[0]
    assert "consumer_lag=12i" in lines[0]
    assert "write_ms_max=30.0" in lines[0]
    assert lines[1] == (
        "kotaflow_pipeline,instance=host-1,reason=not_json,stage=validate deadletter=2i 1000"
    )
    assert h.value("validate", "records_out") == 8
    text = h.registry.get_sample_value(
        "kotaflow_deadletter_total", {"stage": "validate", "reason": "not_json"}
    )
    assert text == 2
