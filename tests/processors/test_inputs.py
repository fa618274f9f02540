"""What a consuming stage makes of a readings record: its good readings and dead letters."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from kotaflow.wire.readings import ValidReading
from kotaflow.wire.reasons import Reason
from processors.runtime.readings_input import parse_readings

HEAD = b'{"v":2,"device":"d1","type":"air_quality","kecamatan":"Reok",'
UNITS = b'"units":{"pm25":"ug/m3","pm10":"ug/m3"},"ts_ms":5,"flags":[],'


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("kotaflow.readings", 2, 40, 0, 0, b"d1", value, None, 0, 0, ())


def test_a_value_that_is_not_finite_is_dead_lettered_and_the_rest_kept() -> None:
    readings, letters = parse_readings(
        _record(HEAD + UNITS + b'"values":{"pm25":1.5,"pm10":"nan"}}'), "store"
    )
    assert readings == [ValidReading("d1", "air_quality", "Reok", "pm25", 1.5, "ug/m3", 5)]
    assert [(d.reason, d.metric, d.source["offset"]) for d in letters] == [
        (Reason.NOT_FINITE, "pm10", 40)
    ]


def test_a_record_of_an_unknown_version_is_dead_lettered_whole() -> None:
    readings, letters = parse_readings(_record(b'{"v":7}'), "aggregate")
    assert readings == []
    assert [(d.reason, d.stage, d.payload) for d in letters] == [
        (Reason.UNSUPPORTED_VERSION, "aggregate", b'{"v":7}')
    ]


def test_a_value_without_a_unit_breaks_the_record() -> None:
    readings, letters = parse_readings(
        _record(HEAD + UNITS + b'"values":{"pm25":1.5,"co2":400.0}}'), "alert"
    )
    assert readings == []
    assert [d.reason for d in letters] == [Reason.BAD_ENVELOPE]
    assert "co2" in letters[0].message
