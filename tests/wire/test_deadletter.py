"""The dead letter (``kotaflow/wire/deadletter.py``) and its reasons (``reasons.py``)."""

from __future__ import annotations

import json

from kotaflow.wire.deadletter import DEADLETTER_VERSION, DeadLetter
from kotaflow.wire.reasons import Reason

LETTER = DeadLetter(
    stage="validate",
    reason=Reason.OUT_OF_RANGE,
    message="pm25 999.0 is above 500.0",
    payload=b"\xff\x00 the device's bytes",
    device="rtg-aq-01",
    metric="pm25",
    source={"mqtt_topic": "t", "kafka_topic": "kotaflow.raw", "partition": 2, "offset": 41},
    at_ms=1_764_300_000_000,
)


def test_the_schema_version_is_1() -> None:
    assert DEADLETTER_VERSION == 1
    assert json.loads(LETTER.value())["v"] == 1


def test_a_dead_letter_round_trips_with_its_bytes_whole() -> None:
    assert DeadLetter.from_value(LETTER.value()) == LETTER
    assert LETTER.key() == b"rtg-aq-01"


def test_the_value_has_the_documented_fields() -> None:
    assert json.loads(LETTER.value()) == {
        "v": 1,
        "stage": "validate",
        "reason": "out_of_range",
        "message": "pm25 999.0 is above 500.0",
        "device": "rtg-aq-01",
        "metric": "pm25",
        "at_ms": 1_764_300_000_000,
        "source": {"mqtt_topic": "t", "kafka_topic": "kotaflow.raw", "partition": 2, "offset": 41},
        "payload_b64": "/wAgdGhlIGRldmljZSdzIGJ5dGVz",
    }


def test_a_letter_without_device_has_no_key() -> None:
    bare = DeadLetter(stage="store", reason=Reason.BAD_ENVELOPE, message="m", payload=b"")
    assert bare.key() is None
    assert DeadLetter.from_value(bare.value()) == bare


def test_reason_values_are_never_renamed() -> None:
    """Dashboards and the deadletter counter count these strings: add, never rename."""
    assert {
        "not_json", "bad_shape", "bad_type", "unknown_metric", "bad_unit", "not_finite",
        "out_of_range", "time_in_future", "time_too_old", "unknown_device", "device_disabled",
        "device_mismatch", "unsupported_version", "must_understand", "oversize",
        "unknown_topic", "rate_limited", "bad_envelope", "bad_time",
    } <= {reason.value for reason in Reason}  # fmt: skip
