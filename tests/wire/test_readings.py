"""The readings record (``kotaflow/wire/readings.py``): what every consuming stage reads."""

from __future__ import annotations

import pytest

from kotaflow.wire.readings import (
    READ_VERSIONS,
    READING_VERSION,
    ReadingsRecord,
    RecordError,
    ValidReading,
    readings_of,
    readings_record,
    record_of,
)


def test_the_schema_version_is_2_and_1_is_still_read() -> None:
    assert READING_VERSION == 2
    assert READ_VERSIONS == (1, 2)


def test_a_record_of_several_readings_round_trips_byte_for_byte() -> None:
    units = {"pm25": "ug/m3", "pm10": "ug/m3", "co2": "ppm"}
    raw = readings_record(
        "rtg-aq-01", "air_quality", "Langke Rembong", units, 1_764_300_000_000,
        ("receive_time",), {"pm25": 35.2, "pm10": 48.0},
    )  # fmt: skip
    assert raw == (
        b'{"v":2,"device":"rtg-aq-01","type":"air_quality","kecamatan":"Langke Rembong",'
        b'"units":{"pm25":"ug/m3","pm10":"ug/m3","co2":"ppm"},"ts_ms":1764300000000,'
        b'"flags":["receive_time"],"values":{"pm25":35.2,"pm10":48.0}}'
    )
    flags = ("receive_time",)
    assert readings_of(raw) == [
        ValidReading("rtg-aq-01", "air_quality", "Langke Rembong", "pm25", 35.2, "ug/m3",
                     1_764_300_000_000, flags),
        ValidReading("rtg-aq-01", "air_quality", "Langke Rembong", "pm10", 48.0, "ug/m3",
                     1_764_300_000_000, flags),
    ]  # fmt: skip


def test_a_record_is_read_whole_as_one_tuple_with_its_values_as_floats() -> None:
    units = {"pm25": "ug/m3", "pm10": "ug/m3"}
    raw = readings_record("d1", "air_quality", "Reok", units, 5, (), {"pm25": 35, "pm10": 48.5})
    found = record_of(raw)
    assert found == ReadingsRecord(
        "d1", "air_quality", "Reok", units, 5, (), {"pm25": 35.0, "pm10": 48.5}
    )
    assert isinstance(found.values["pm25"], float)
    assert found.readings() == readings_of(raw)
    assert found.reading("pm10") == readings_of(raw)[1]


def test_a_reading_alone_is_a_version_2_record_of_one_value() -> None:
    reading = ValidReading("d1", "air_quality", "Reok", "pm25", 35.2, "ug/m3", 5, ("x",))
    assert readings_of(reading.value_bytes()) == [reading]


def test_version_1_records_are_still_read() -> None:
    v1 = (
        b'{"v":1,"device":"d1","type":"air_quality","kecamatan":"Reok","metric":"pm25",'
        b'"value":35.2,"unit":"ug/m3","ts_ms":5,"flags":[]}'
    )
    assert readings_of(v1) == [ValidReading("d1", "air_quality", "Reok", "pm25", 35.2, "ug/m3", 5)]


@pytest.mark.parametrize(
    ("raw", "unsupported"),
    [
        (b'{"v": 3}', True),
        (b'{"v": 2}', False),
        (
            b'{"v": 2, "device": "d", "type": "t", "kecamatan": "k", "units": {}, "ts_ms": 1,'
            b' "values": {}}',
            False,
        ),
        (
            b'{"v": 2, "device": "d", "type": "t", "kecamatan": "k", "units": {}, "ts_ms": 1,'
            b' "values": {"pm25": 1.0}}',
            False,
        ),
        (
            b'{"v": 2, "device": "d", "type": "t", "kecamatan": "k", "units": [], "ts_ms": 1,'
            b' "values": {"pm25": 1.0}}',
            False,
        ),
        (
            b'{"v": 2, "device": "d", "type": "t", "kecamatan": "k", "units": {"pm25": "x"},'
            b' "ts_ms": 1, "values": {"pm25": "high"}}',
            False,
        ),
        (b"[]", False),
        (b"{no", False),
    ],
)
def test_a_broken_record_says_why(raw: bytes, unsupported: bool) -> None:
    for read in (readings_of, record_of):
        with pytest.raises(RecordError) as caught:
            read(raw)
        assert caught.value.unsupported_version is unsupported
