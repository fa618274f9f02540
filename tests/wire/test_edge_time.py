"""An edge's receive time on the raw envelope is the decoders' "now" (RawEnvelope.taken_ms)."""

from __future__ import annotations

from kotaflow.wire.raw import (
    EDGE_RX_PROPERTY,
    DeviceKeyKind,
    PayloadFormat,
    RawEnvelope,
    parse_envelope,
)


def envelope(*props: tuple[str, str]) -> RawEnvelope:
    return RawEnvelope(
        b"{}",
        "kotaflow/a/telemetry",
        "a",
        DeviceKeyKind.DEVICE_ID,
        PayloadFormat.NATIVE_JSON,
        rx_ms=10_000,
        user_properties=props,
    )


def test_an_edge_forwarded_message_keeps_the_edge_receive_time_through_kafka_headers() -> None:
    sent = envelope(("edge", "cibal"), (EDGE_RX_PROPERTY, "4000"))
    back = parse_envelope(sent.payload, sent.headers())
    assert back.taken_ms() == 4_000
    assert dict(back.user_properties)["edge"] == "cibal"


def test_without_a_valid_edge_time_the_bridge_time_counts() -> None:
    assert envelope().taken_ms() == 10_000
    assert envelope((EDGE_RX_PROPERTY, "soon")).taken_ms() == 10_000
    assert envelope((EDGE_RX_PROPERTY, "20000")).taken_ms() == 10_000  # later than the bridge
