"""The validate stage against the real Kafka: readings out, every fault dead-lettered."""

from __future__ import annotations

import json

import pytest

from devices.fleet import load_fleet
from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.readings import ValidReading, readings_of, readings_record
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
    out = encoder.device("rtg-aq-01")
    device = fleet.device("rtg-aq-01")
    assert out is not None
    assert device is not None
    units = {name: m.unit for name, m in fleet.metrics_of(device).items()}
    values = {"pm25": 35.2, "pm10": 1e-07}
    flags = ("receive_time",)
    got = encoder.encode(out, 1_764_300_000_000, flags, values)
    ts = 1_764_300_000_000
    assert got == readings_record(
        device.id, device.type, device.kecamatan, units, ts, flags, values
    )
    assert readings_of(got) == [
        ValidReading("rtg-aq-01", device.type, device.kecamatan, m, v, units[m], ts, flags)
        for m, v in values.items()
    ]
    assert encoder.device("no-such-device") is None


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
    expected_records = 50 + 1 + 1  # one per message: its readings share device and time
    expected_readings = 50 * 2 + 1 + 1
    async with running(s, StageName.VALIDATE) as health:
        readings = await read_topic(
            s, s.kafka.topics.readings, lambda r: len(r) >= expected_records
        )
        letters = await read_topic(s, s.kafka.topics.deadletter, lambda r: len(r) >= 8)
    assert health.value("validate", "records_in") == len(good) + len(bad)
    assert health.value("validate", "records_out") == expected_readings

    per_record = [readings_of(r.value or b"") for r in readings]
    values = [v for record in per_record for v in record]
    assert len(readings) == expected_records
    assert len(values) == expected_readings
    pm25 = [v for v in values if v.device == "rtg-aq-01" and v.metric == "pm25"]
    assert len(pm25) == 50
    assert all(v.value == pytest.approx(10.0 * 1.04 - 1.2) for v in pm25)
    assert {(v.type, v.kecamatan) for v in pm25} == {("air_quality", "Langke Rembong")}
    assert all(
        r.key == v.device.encode()
        for r, record in zip(readings, per_record, strict=True)
        for v in record
    )
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


@pytest.mark.services
@pytest.mark.asyncio
async def test_readings_sharing_a_time_go_out_together_and_a_repeat_is_kept(
    on_kafka: Settings,
) -> None:
    """A message's readings of one time are one record; a metric that comes again at the
    same time (a buffered upload sent twice) starts a new record instead of replacing it;
    another time is another record."""
    s = on_kafka
    t = now_ms()
    body = [
        {"ts": t - 2000, "values": {"pm25": 10.0, "pm10": 20.0}},
        {"ts": t - 2000, "values": {"pm25": 11.0}},
        {"ts": t - 1000, "values": {"pm25": 12.0}},
    ]
    await produce(s, s.kafka.topics.raw, [envelope("rtg-aq-03", json.dumps(body).encode(), t)])
    async with running(s, StageName.VALIDATE):
        records = await read_topic(s, s.kafka.topics.readings, lambda r: len(r) >= 3)
    got = [[(v.metric, v.value, v.ts_ms) for v in readings_of(r.value or b"")] for r in records]
    assert got == [
        [("pm25", 10.0, t - 2000), ("pm10", 20.0, t - 2000)],
        [("pm25", 11.0, t - 2000)],
        [("pm25", 12.0, t - 1000)],
    ]


@pytest.mark.services
@pytest.mark.asyncio
async def test_payload_that_is_not_utf8_is_dead_lettered_not_stored(on_kafka: Settings) -> None:
    """The issue's case (a lone surrogate ``ED A0 80`` in a JSON string, which the old
    ``json`` fallback let through) and its kin, through the stage: each a ``not_utf8``
    dead letter with its original bytes; the good message beside them comes out."""
    s = on_kafka
    t = now_ms()
    bad_payloads = [
        b'{"pm25": 12.0, "note": "\xed\xa0\x80"}',
        b'{"pm25": 12.0, "note": "\xc0\xaf"}',
        b'{"pm25": NaN, "note": "\xe2\x82"}',
        b'{"pm25": 12.0}\xff',
    ]
    bad = [envelope("rtg-aq-01", p, t) for p in bad_payloads]
    await produce(s, s.kafka.topics.raw, [*bad, native("rtg-aq-01", {"pm25": 10.0}, t, t)])
    async with running(s, StageName.VALIDATE):
        readings = await read_topic(s, s.kafka.topics.readings, lambda r: len(r) >= 1)
        letters = await read_topic(s, s.kafka.topics.deadletter, lambda r: len(r) >= 4)
    dead = [DeadLetter.from_value(r.value or b"") for r in letters]
    assert sorted(d.payload for d in dead) == sorted(bad_payloads)
    assert {d.reason.value for d in dead} == {"not_utf8"}
    assert [v.metric for r in readings for v in readings_of(r.value or b"")] == ["pm25"]
