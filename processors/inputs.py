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


def parse_reading(record: ConsumerRecord[bytes, bytes], stage: str) -> ValidReading | DeadLetter:
    raw = record.value or b""
    key = record.key.decode(errors="replace") if record.key else None
    try:
        reading = ValidReading.from_bytes(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        unsupported = "version" in str(err) and b'"v":' in raw and b'"v":1,' not in raw
        reason = Reason.UNSUPPORTED_VERSION if unsupported else Reason.BAD_ENVELOPE
        return DeadLetter(
            stage=stage,
            reason=reason,
            message=f"not a readings record v{READING_VERSION}: {type(err).__name__}: {err}",
            payload=raw,
            device=key,
            source=source_of(record),
        )
    if not math.isfinite(reading.value):
        return DeadLetter(
            stage=stage,
            reason=Reason.NOT_FINITE,
            message=f"value {reading.value!r} is not finite",
            payload=raw,
            device=reading.device,
            metric=reading.metric,
            source=source_of(record),
        )
    return reading
