"""The validate stage against the real Kafka: readings out, every fault dead-lettered."""

from __future__ import annotations

import json

import pytest

from devices.fleet import load_fleet
from devices.reading import Reading
from kotaflow.deadletter import DeadLetter
from kotaflow.settings import Settings
from processors.record import ValidReading
from processors.runner import StageName
from processors.validate import ReadingEncoder
from tests.processors.helpers import (
    committed,
    end_offsets,
    envelope,
    native,
    now_ms,
    produce,
    read_topic,
    running,
)


def test_encoder_bytes_equal_the_record_contract() -> None:
    fleet = load_fleet()
    encoder = ReadingEncoder(fleet)
    out = encoder.metric("rtg-aq-01", "pm25")
    assert out is not None
    reading = Reading("rtg-aq-01", "pm25", 35.2, 1_764_300_000_000, ("receive_time",))
    device = fleet.device("rtg-aq-01")
    assert device is not None
    expected = ValidReading(
        device="rtg-aq-01",
        type=device.type,
        kecamatan=device.kecamatan,
        metric="pm25",
        value=35.2,
        unit=fleet.metrics_of(device)["pm25"].unit,
        ts_ms=1_764_300_000_000,
        flags=("receive_time",),
    )
    assert encoder.encode(out, reading.value, reading.ts_ms, reading.flags) == (
        expected.value_bytes()
    )
    assert encoder.metric("no-such-device", "pm25") is None
    assert encoder.metric("rtg-aq-01", "no_such_metric") is None


@pytest.mark.services
@pytest.mark.asyncio
async def test_validate_emits_calibrated_enriched_readings_and_dead_letters_faults(
    on_kafka: Settings,
) -> None:
    s = on_kafka
    t = now_ms()
    good = [native("rtg-aq-01", {"pm25": 10.0, "pm10": 20.0}, t - i * 1000, t) for i in range(50)]
    good += [native("rtg-wx-01", {"temperature": 21.5}, None, t)]
    bad = [
        envelope("rtg-aq-01", b"{not json", t),
        native("no-such-device", {"pm25": 1.0}, t, t),
        native("rtg-aq-04", {"pm25": 1.0}, t, t),  # disabled in the registry
        native("rtg-aq-02", {"pm25": 1e9}, t, t),
        native("rtg-aq-02", {"pm25": 5.0, "colour": 3}, t, t),  # one good, one unknown metric
        envelope("rtg-aq-02", b"{}", t, topic="somewhere/else"),
        (b"rtg-aq-02", b"{}", [("kf.v", b"9")]),
        (b"rtg-aq-02", None, []),
    ]
    await produce(s, s.kafka.topics.raw, good + bad)
    expected_readings = 50 * 2 + 1 + 1
    async with running(s, StageName.VALIDATE) as health:
        readings = await read_topic(
            s, s.kafka.topics.readings, lambda r: len(r) >= expected_readings
        )
        letters = await read_topic(s, s.kafka.topics.deadletter, lambda r: len(r) >= 8)
    assert health.value("validate", "records_in") == len(good) + len(bad)

    values = [ValidReading.from_bytes(r.value or b"") for r in readings]
    assert len(values) == expected_readings
    pm25 = [v for v in values if v.device == "rtg-aq-01" and v.metric == "pm25"]
    assert len(pm25) == 50
    assert all(v.value == pytest.approx(10.0 * 1.04 - 1.2) for v in pm25)
    assert {(v.type, v.kecamatan) for v in pm25} == {("air_quality", "Langke Rembong")}
    assert all(r.key == v.device.encode() for r, v in zip(readings, values, strict=True))
    weather = [v for v in values if v.device == "rtg-wx-01"]
    assert [(w.metric, w.flags) for w in weather] == [("temperature", ("receive_time",))]

    dead = [DeadLetter.from_value(r.value or b"") for r in letters]
    reasons = sorted(d.reason.value for d in dead)
    assert reasons == sorted(
        [
            "not_json",
            "unknown_device",
            "device_disabled",
            "out_of_range",
            "unknown_metric",
            "unknown_topic",
            "bad_envelope",
            "bad_envelope",
        ]
    )
    not_json = next(d for d in dead if d.reason.value == "not_json")
    assert not_json.payload == b"{not json"
    assert not_json.stage == "validate"
    assert not_json.source["kafka_topic"] == s.kafka.topics.raw
    assert not_json.source["mqtt_topic"] == "kotaflow/rtg-aq-01/telemetry"
    assert {"partition", "offset"} <= not_json.source.keys()
    raw_ends = await end_offsets(s, s.kafka.topics.raw)
    commits = await committed(s, s.processing.validation.group_id, s.kafka.topics.raw)
    assert {p: o for p, o in raw_ends.items() if o} == {p: o for p, o in commits.items() if o}
    assert json.loads(letters[0].value or b"{}")["v"] == 1
