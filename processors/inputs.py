"""Reading consumed records safely: where a record came from, and readings-or-dead-letter.

Shared by store and aggregate (both consume ``kotaflow.readings``): a record that is not a
valid readings record v1 becomes a dead letter with the record's bytes and position, never
an exception that would stop the stream.
"""

from __future__ import annotations

import math
from typing import Any

from aiokafka import ConsumerRecord

from devices.reading import Reason
from kotaflow.deadletter import DeadLetter
from processors.record import READING_VERSION, ValidReading


def source_of(
    record: ConsumerRecord[bytes, bytes], mqtt_topic: str | None = None
) -> dict[str, Any]:
    """The ``source`` of a dead letter: which topic, partition and offset the bytes were at."""
    source: dict[str, Any] = {
        "kafka_topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    if mqtt_topic is not None:
        source["mqtt_topic"] = mqtt_topic
    return source


def refused(
    record: ConsumerRecord[bytes, bytes],
    stage: str,
    reason: Reason,
    message: str,
    *,
    device: str | None = None,
    metric: str | None = None,
    payload: bytes | None = None,
    mqtt_topic: str | None = None,
) -> DeadLetter:
    """The dead letter for (part of) ``record``: its bytes (or ``payload``) and position."""
    key = record.key.decode(errors="replace") if record.key else None
    return DeadLetter(
        stage=stage,
        reason=reason,
        message=message,
        payload=(record.value or b"") if payload is None else payload,
        device=device or key,
        metric=metric,
        source=source_of(record, mqtt_topic),
    )


def parse_reading(record: ConsumerRecord[bytes, bytes], stage: str) -> ValidReading | DeadLetter:
    raw = record.value or b""
    try:
        reading = ValidReading.from_bytes(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        unsupported = "version" in str(err) and b'"v":' in raw and b'"v":1,' not in raw
        reason = Reason.UNSUPPORTED_VERSION if unsupported else Reason.BAD_ENVELOPE
        why = f"not a readings record v{READING_VERSION}: {type(err).__name__}: {err}"
        return refused(record, stage, reason, why)
    if not math.isfinite(reading.value):
        why = f"value {reading.value!r} is not finite"
        return refused(
            record, stage, Reason.NOT_FINITE, why, device=reading.device, metric=reading.metric
        )
    return reading
