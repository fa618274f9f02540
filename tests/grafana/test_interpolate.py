"""Grafana's variable and Flux macro rewriting, reproduced for running queries without it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploy.grafana.interpolate import (
    AllValue,
    QueryWindow,
    go_duration,
    interpolate,
    replace_variables,
    stray_macros,
)

WINDOW = QueryWindow(
    datetime(2026, 11, 28, 1, 0, tzinfo=UTC),
    datetime(2026, 11, 28, 7, 0, 0, 250000, tzinfo=UTC),
    timedelta(minutes=1),
    "telemetry",
    "kotaflow",
)


def test_time_macros_become_rfc3339_and_go_durations() -> None:
    flux = "from(bucket: v.defaultBucket) |> range(start: v.timeRangeStart, stop: v.timeRangeStop)"
    flux += " |> aggregateWindow(every: v.windowPeriod, fn: mean)"
    assert interpolate(flux, {}, WINDOW) == (
        'from(bucket: "telemetry") |> range(start: 2026-11-28T01:00:00Z,'
        " stop: 2026-11-28T07:00:00.25Z) |> aggregateWindow(every: 1m0s, fn: mean)"
    )


def test_go_durations_read_like_time_duration_string() -> None:
    cases = {0.5: "500ms", 10: "10s", 60: "1m0s", 90: "1m30s", 7200: "2h0m0s", 3661: "1h1m1s"}
    assert {s: go_duration(timedelta(seconds=s)) for s in cases} == cases


def test_regex_variables_are_escaped_and_all_is_inserted_raw() -> None:
    flux = 'r.kecamatan =~ /^${kecamatan:regex}$/ and r.device == "${device}" and $type'
    values = {"kecamatan": "Reok Barat (kota)/x", "device": "rtg-aq-01", "type": AllValue(".*")}
    assert replace_variables(flux, values) == (
        'r.kecamatan =~ /^Reok Barat \\(kota\\)\\/x$/ and r.device == "rtg-aq-01" and .*'
    )


def test_unknown_variables_are_left_for_grafana() -> None:
    assert replace_variables("${__field.labels.device} $other", {"device": "x"}) == (
        "${__field.labels.device} $other"
    )


def test_any_word_before_a_macro_name_is_rewritten_so_queries_must_avoid_them() -> None:
    assert interpolate("r.defaultBucket", {}, WINDOW) == '"telemetry"'
    assert stray_macros('r.bucket == "x" and v.timeRangeStart') == ["r.bucket"]
