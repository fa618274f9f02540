"""Reading consumed records safely: where a record came from, and readings-or-dead-letter.

Shared by store, aggregate and alert (all consume ``kotaflow.readings``): a record that is
not a readings record (version 1 or 2) becomes a dead letter with the record's bytes and
position, never an exception that would stop the stream.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

from aiokafka import ConsumerRecord

from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.readings import ReadingsRecord, RecordError, ValidReading, record_of
from kotaflow.wire.reasons import Reason


class Origin(Protocol):
    """Where a consumed record was and its bytes: all a dead letter needs of it
    (a ``ConsumerRecord`` or a :class:`RecordRef`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RecordRef(NamedTuple):
    """A consumed record kept for a possible dead letter: position and bytes only. What a
    write buffer holds until the write succeeds; a ``ConsumerRecord`` (headers, sizes,
    timestamps, an instance dict) takes about twice the memory, and the store stage keeps
    tens of thousands under a backlog."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> RecordRef:
        return cls(record.topic, record.partition, record.offset, record.key, record.value)


def source_of(
    record: Origin, mqtt_topic: str | None = None, rx_ms: int | None = None
) -> dict[str, Any]:
    """The ``source`` of a dead letter: which topic, partition and offset the bytes were at,
    and (from validate) the MQTT topic and the bridge's receive time, which a replay needs to
    rebuild the raw record exactly."""
    source: dict[str, Any] = {
        "kafka_topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    if mqtt_topic is not None:
        source["mqtt_topic"] = mqtt_topic
    if rx_ms is not None:
        source["rx_ms"] = rx_ms
    return source


def refused(
    record: Origin,
    stage: str,
    reason: Reason,
    message: str,
    *,
    device: str | None = None,
    metric: str | None = None,
    payload: bytes | None = None,
    mqtt_topic: str | None = None,
    rx_ms: int | None = None,
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
        source=source_of(record, mqtt_topic, rx_ms),
    )


def refused_reading(
    record: Origin, stage: str, reason: Reason, message: str, reading: ValidReading
) -> DeadLetter:
    """The dead letter for one reading of a record: the record's bytes, naming the reading."""
    return refused(record, stage, reason, message, device=reading.device, metric=reading.metric)


def parse_record(
    record: ConsumerRecord[bytes, bytes], stage: str
) -> tuple[ReadingsRecord | None, list[DeadLetter]]:
    """The good readings of a record (None if none), and a dead letter for the record if it
    is not a readings record or for each value that is not finite."""
    try:
        found = record_of(record.value or b"")
    except RecordError as err:
        reason = Reason.UNSUPPORTED_VERSION if err.unsupported_version else Reason.BAD_ENVELOPE
        return None, [refused(record, stage, reason, str(err))]
    values = found.values
    if all(map(math.isfinite, values.values())):
        return found, []
    letters = [
        refused_reading(
            record, stage, Reason.NOT_FINITE, f"value {v!r} is not finite", found.reading(m)
        )
        for m, v in values.items()
        if not math.isfinite(v)
    ]
    good = {m: v for m, v in values.items() if math.isfinite(v)}
    return (found._replace(values=good) if good else None), letters


def parse_readings(
    record: ConsumerRecord[bytes, bytes], stage: str
) -> tuple[list[ValidReading], list[DeadLetter]]:
    """:func:`parse_record`, one :class:`ValidReading` per good reading."""
    found, letters = parse_record(record, stage)
    return (found.readings() if found is not None else []), letters
