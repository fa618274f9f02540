"""Edge policy: forward known device topics untouched, dead-letter the rest with a reason."""

from __future__ import annotations

import hashlib
import os

import pytest

from ingest.edge import EdgePolicy, Inbound, Route
from ingest.ratelimit import DeviceRateLimiter
from kotaflow.wire.deadletter import COMPACT_PREFIX_BYTES, DeadLetter
from kotaflow.wire.raw import (
    DeviceKeyKind,
    EnvelopeError,
    EnvelopeReader,
    PayloadFormat,
    RawEnvelope,
    parse_envelope,
    plain_tails,
)
from kotaflow.wire.reasons import Reason


def _policy(rate: float | None = None, burst: int = 1) -> EdgePolicy:
    limiter = DeviceRateLimiter(rate, burst) if rate is not None else None
    return EdgePolicy(max_payload_bytes=100, limiter=limiter)


def test_device_message_becomes_a_raw_envelope_with_payload_untouched() -> None:
    payload = b'{"t": 21.5}'
    msg = Inbound(
        "kotaflow/rtg-aq-01/telemetry",
        payload,
        qos=1,
        content_type="application/json",
        user_properties=(("fw", "1.2"),),
    )
    out = _policy().classify(msg, rx_ms=1_764_300_000_000, now=0.0)
    assert isinstance(out, RawEnvelope)
    assert out.key() == b"rtg-aq-01"
    back = parse_envelope(out.payload, out.headers())
    assert back == out
    assert back.payload is payload
    assert back.format is PayloadFormat.NATIVE_JSON


def test_lorawan_topics_are_keyed_by_lower_case_dev_eui() -> None:
    msg = Inbound("application/manggarai/device/0011AABBCCDDEEFF/event/up", b"{}")
    out = _policy().classify(msg, rx_ms=0, now=0.0)
    assert isinstance(out, RawEnvelope)
    assert out.device_key == "0011aabbccddeeff"
    assert out.key_kind is DeviceKeyKind.DEV_EUI


def test_oversize_payload_is_dead_lettered_compactly() -> None:
    payload = os.urandom(3_000_000)
    out = _policy().classify(Inbound("kotaflow/d1/telemetry", payload), rx_ms=0, now=0.0)
    assert isinstance(out, DeadLetter)
    assert out.reason is Reason.OVERSIZE
    assert out.device == "d1"
    assert len(out.value()) < 4_096  # always fits a Kafka record
    again = DeadLetter.from_value(out.value())
    assert again.payload == payload[:COMPACT_PREFIX_BYTES]
    assert again.source["payload_bytes"] == len(payload)
    assert again.source["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert again.source["payload_truncated"] is True
    assert again.source["mqtt_topic"] == "kotaflow/d1/telemetry"


def test_a_record_the_producer_refuses_becomes_a_compact_oversize_dead_letter() -> None:
    msg = Inbound("kotaflow/d1/telemetry", b"{}", user_properties=(("pad", "p" * 60_000),))
    policy = _policy()
    policy.route(msg.topic.encode(), 2, 0.0)  # learns the topic, as the bridge's pump does
    out = policy.refused(msg, "record of 200000 bytes > limit 100000 bytes")
    assert out.reason is Reason.OVERSIZE
    assert out.device == "d1"
    assert out.message.startswith("record refused: record of 200000 bytes")
    assert out.payload == b"{}"
    assert out.source["payload_truncated"] is False


def test_an_exempt_message_skips_the_rate_limit_only() -> None:
    policy = _policy(rate=1.0, burst=1)
    topic = b"kotaflow/d1/telemetry"
    assert isinstance(policy.route(topic, 2, 0.0), Route)
    assert policy.route(topic, 2, 0.0) is Reason.RATE_LIMITED
    assert isinstance(policy.route(topic, 2, 0.0, limited=False), Route)
    assert policy.route(topic, 101, 0.0, limited=False) is Reason.OVERSIZE


def test_unknown_topic_is_dead_lettered() -> None:
    out = _policy().classify(Inbound("kotaflow/d1/config", b"{}"), rx_ms=0, now=0.0)
    assert isinstance(out, DeadLetter)
    assert out.reason is Reason.UNKNOWN_TOPIC
    assert out.stage == "bridge"


def test_rate_limited_excess_is_dead_lettered_per_device() -> None:
    policy = _policy(rate=1.0, burst=2)
    flood = [policy.classify(Inbound("kotaflow/flood/telemetry", b"{}"), 0, 0.0) for _ in range(5)]
    reasons = [x.reason if isinstance(x, DeadLetter) else None for x in flood]
    assert reasons == [None, None, Reason.RATE_LIMITED, Reason.RATE_LIMITED, Reason.RATE_LIMITED]
    quiet = policy.classify(Inbound("kotaflow/quiet/telemetry", b"{}"), 0, 0.0)
    assert isinstance(quiet, RawEnvelope)


@pytest.mark.parametrize("qos", [0, 1])
def test_the_bridges_short_path_makes_the_same_record_as_the_envelope(qos: int) -> None:
    policy = _policy()
    route = policy.route(b"kotaflow/d1/telemetry", 2, now=0.0)
    assert isinstance(route, Route)
    msg = Inbound("kotaflow/d1/telemetry", b"{}", qos=qos)
    envelope = policy.envelope(msg, route, rx_ms=1_764_300_000_123)
    assert route.topic_headers + plain_tails(1_764_300_000_123)[qos] == envelope.headers()
    assert route.key == envelope.key()


def test_topics_that_are_not_utf8_are_dead_lettered_not_fatal() -> None:
    assert _policy().route(b"kotaflow/\xff/telemetry", 2, now=0.0) is Reason.UNKNOWN_TOPIC


@pytest.mark.parametrize("qos", [0, 1])
def test_a_plain_record_parses_the_same_in_the_bridges_order_or_any_other(qos: int) -> None:
    env = RawEnvelope(b"{}", "kotaflow/d1/telemetry", "d1", DeviceKeyKind.DEVICE_ID,
                      PayloadFormat.NATIVE_JSON, 1_764_300_000_123, qos)  # fmt: skip
    headers = env.headers()
    assert len(headers) == 7  # the short path's shape
    assert parse_envelope(env.payload, headers) == env
    assert parse_envelope(env.payload, headers[::-1]) == env  # the general path


@pytest.mark.parametrize(
    ("name", "bad"), [("kf.rx_ms", b"12x"), ("kf.topic", b"\xff"), ("kf.qos", b"7x")]
)
def test_a_broken_plain_record_is_refused_with_the_reason(name: str, bad: bytes) -> None:
    env = RawEnvelope(b"{}", "kotaflow/d1/telemetry", "d1", DeviceKeyKind.DEVICE_ID,
                      PayloadFormat.NATIVE_JSON, 1)  # fmt: skip
    headers = [(k, bad if k == name else v) for k, v in env.headers()]
    with pytest.raises(EnvelopeError, match="malformed header"):
        parse_envelope(env.payload, headers)


def _plain(topic: str, device: str, rx_ms: int, qos: int = 1) -> RawEnvelope:
    return RawEnvelope(b"{}", topic, device, DeviceKeyKind.DEVICE_ID,
                       PayloadFormat.NATIVE_JSON, rx_ms, qos)  # fmt: skip


def test_the_envelope_reader_reads_what_parse_envelope_reads() -> None:
    reader = EnvelopeReader()
    first = _plain("kotaflow/d1/telemetry", "d1", 1_764_300_000_123)
    again = _plain("kotaflow/d1/telemetry", "d1", 1_764_300_000_456, qos=0)
    other = _plain("kotaflow/d2/telemetry", "d2", 1_764_300_000_789)
    special = first._replace(retain=True, content_type="application/json",
                             user_properties=(("fw", "1.2"),))  # fmt: skip
    for env in (first, again, other, special, first):
        for headers in (env.headers(), tuple(env.headers()), env.headers()[::-1]):
            assert reader.read(env.payload, headers) == env == parse_envelope(env.payload, headers)


@pytest.mark.parametrize(
    ("name", "bad"), [("kf.rx_ms", b"12x"), ("kf.qos", b"7x"), ("kf.qos", b"2")]
)
def test_the_envelope_reader_checks_what_a_known_topic_does_not_fix(name: str, bad: bytes) -> None:
    reader = EnvelopeReader()
    env = _plain("kotaflow/d1/telemetry", "d1", 1)
    reader.read(env.payload, env.headers())  # the topic is known now
    headers = [(k, bad if k == name else v) for k, v in env.headers()]
    if bad == b"2":  # a valid QoS 2 record takes the general path and keeps its QoS
        assert reader.read(env.payload, headers).qos == 2
        return
    with pytest.raises(EnvelopeError, match="malformed header"):
        reader.read(env.payload, headers)


def test_the_envelope_reader_forgets_when_full() -> None:
    reader = EnvelopeReader(capacity=2)
    envs = [_plain(f"kotaflow/d{i}/telemetry", f"d{i}", i) for i in range(5)]
    for env in envs + envs:
        assert reader.read(env.payload, env.headers()) == env
