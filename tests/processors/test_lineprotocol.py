"""Line protocol escaping and the telemetry line buffer (pure, no services)."""

from __future__ import annotations

import pytest

from kotaflow.wire.readings import ReadingsRecord
from processors.runtime.lineprotocol import (
    LineProtocolError,
    escape_key,
    escape_measurement,
    format_float,
    series_prefix,
    telemetry_tags,
)
from processors.store import LineBuffer


def test_measurement_escapes_comma_space_and_backslash_but_not_equals() -> None:
    assert escape_measurement("air quality,x=1\\") == "air\\ quality\\,x=1\\\\"


def test_tag_and_field_names_escape_comma_equals_space() -> None:
    assert escape_key("Langke Rembong") == "Langke\\ Rembong"
    assert escape_key("a,b=c") == "a\\,b\\=c"
    assert escape_key("back\\slash") == "back\\\\slash"


@pytest.mark.parametrize("bad", ["two\nlines", "carriage\rreturn"])
def test_line_breaks_cannot_be_escaped_so_they_are_refused(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_key(bad)
    with pytest.raises(LineProtocolError):
        escape_measurement(bad)


def test_series_prefix_sorts_tags_and_leaves_out_empty_values() -> None:
    tags = {"type": "weather", "kecamatan": "", "device": "rtg-wx-01"}
    assert series_prefix("weather", tags) == "weather,device=rtg-wx-01,type=weather"
    full = telemetry_tags("rtg-aq-01", "air_quality", "Langke Rembong")
    assert series_prefix("air_quality", full) == (
        "air_quality,device=rtg-aq-01,kecamatan=Langke\\ Rembong,type=air_quality"
    )


def test_floats_round_trip_and_non_finite_is_refused() -> None:
    assert format_float(35.0) == "35.0"
    assert float(format_float(0.1 + 0.2)) == 0.1 + 0.2
    assert format_float(1e-7) == "1e-07"
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(LineProtocolError):
            format_float(bad)


def _record(
    values: dict[str, float], ts: int, device: str = "rtg-aq-01", kecamatan: str = "Langke Rembong"
) -> ReadingsRecord:
    units = dict.fromkeys(values, "ug/m3")
    return ReadingsRecord(device, "air_quality", kecamatan, units, ts, (), values)


def _reading(metric: str, value: float, ts: int, device: str = "rtg-aq-01") -> ReadingsRecord:
    return _record({metric: value}, ts, device)


def test_buffer_merges_metrics_of_one_device_and_instant_into_one_line() -> None:
    buf = LineBuffer()
    origin: object = object()
    buf.add(_reading("pm25", 35.2, 1000), origin)  # type: ignore[arg-type]
    buf.add(_reading("pm10", 50.0, 1000), origin)  # type: ignore[arg-type]
    buf.add(_reading("pm25", 36.0, 2000), origin)  # type: ignore[arg-type]
    buf.add(_reading("pm25", 10.0, 1000, device="rtg-aq-02"), origin)  # type: ignore[arg-type]
    lines, origins = buf.take()
    prefix = "air_quality,device=rtg-aq-01,kecamatan=Langke\\ Rembong,type=air_quality"
    assert lines == [
        f"{prefix} pm25=35.2,pm10=50.0 1000",
        f"{prefix} pm25=36.0 2000",
        "air_quality,device=rtg-aq-02,kecamatan=Langke\\ Rembong,type=air_quality pm25=10.0 1000",
    ]
    assert [len(o) for o in origins] == [2, 1, 1]
    assert len(buf) == 0


def test_a_replayed_reading_in_the_same_batch_keeps_the_later_value() -> None:
    buf = LineBuffer()
    buf.add(_reading("pm25", 1.0, 1000), None)  # type: ignore[arg-type]
    buf.add(_reading("pm25", 2.0, 1000), None)  # type: ignore[arg-type]
    lines, _ = buf.take()
    assert len(lines) == 1
    assert lines[0].endswith(" pm25=2.0 1000")


def test_a_record_of_several_metrics_is_one_line_with_one_origin() -> None:
    buf = LineBuffer()
    assert buf.add(_record({"pm25": 35.2, "pm10": 50.0}, 1000), "record") == []  # type: ignore[arg-type]
    lines, origins = buf.take()
    assert lines == [
        "air_quality,device=rtg-aq-01,kecamatan=Langke\\ Rembong,type=air_quality "
        "pm25=35.2,pm10=50.0 1000"
    ]
    assert origins == [["record"]]


def test_a_metric_that_cannot_be_written_is_refused_alone() -> None:
    buf = LineBuffer()
    refused = buf.add(_record({"pm25": 1.0, "bad\nname": 2.0}, 1000), None)  # type: ignore[arg-type]
    assert [metric for metric, _ in refused] == ["bad\nname"]
    lines, _ = buf.take()
    assert len(lines) == 1
    assert lines[0].endswith(" pm25=1.0 1000")


def test_a_series_that_cannot_be_written_refuses_every_metric_and_makes_no_line() -> None:
    buf = LineBuffer()
    refused = buf.add(_record({"pm25": 1.0, "pm10": 2.0}, 1000, kecamatan="a\nb"), None)  # type: ignore[arg-type]
    assert [metric for metric, _ in refused] == ["pm25", "pm10"]
    assert len(buf) == 0
