"""The raw envelope (``kotaflow/wire/raw.py``): what the bridge writes and validate reads."""

from __future__ import annotations

import pytest

from kotaflow.wire.raw import (
    ENVELOPE_VERSION,
    DeviceKeyKind,
    EnvelopeError,
    EnvelopeReader,
    PayloadFormat,
    RawEnvelope,
    parse_envelope,
)

PLAIN = RawEnvelope(
    b'{"ts":1,"values":{"pm25":3.5}}',
    "kotaflow/v1/native-json/rtg-aq-01",
    "rtg-aq-01",
    DeviceKeyKind.DEVICE_ID,
    PayloadFormat.NATIVE_JSON,
    1_764_300_000_123,
)
FULL = PLAIN._replace(
    payload=b"\xff\x00 not utf-8",
    qos=0,
    retain=True,
    content_type="application/json",
    user_properties=(("site", "Reok"), ("fw", "1.2")),
)


def test_the_schema_version_is_1() -> None:
    assert ENVELOPE_VERSION == 1
    assert PLAIN.headers()[0] == ("kf.v", b"1")


def test_a_plain_envelope_has_the_bridges_seven_headers() -> None:
    assert PLAIN.headers() == [
        ("kf.v", b"1"),
        ("kf.topic", b"kotaflow/v1/native-json/rtg-aq-01"),
        ("kf.device", b"rtg-aq-01"),
        ("kf.key_kind", b"device_id"),
        ("kf.format", b"native-json"),
        ("kf.rx_ms", b"1764300000123"),
        ("kf.qos", b"1"),
    ]
    assert PLAIN.key() == b"rtg-aq-01"


@pytest.mark.parametrize("envelope", [PLAIN, FULL], ids=["plain", "full"])
def test_an_envelope_round_trips_through_its_headers(envelope: RawEnvelope) -> None:
    assert parse_envelope(envelope.payload, envelope.headers()) == envelope
    reader = EnvelopeReader()
    for _ in range(2):  # the second read comes from the reader's memory of the topic
        assert reader.read(envelope.payload, envelope.headers()) == envelope


def test_another_envelope_version_is_refused() -> None:
    headers = [("kf.v", b"2"), *PLAIN.headers()[1:]]
    with pytest.raises(EnvelopeError, match="version 2 is not supported"):
        parse_envelope(PLAIN.payload, headers)
