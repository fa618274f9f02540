"""Reading the dead-letter topic: every record with its id, filtered, and counted.

The topic is read without a consumer group (every partition assigned, from the start or
from the first record of the time range, up to the end offsets taken when reading
starts), so reading changes no committed offset and never competes with anything. A
record that is not a dead letter v1 is reported as unreadable, never skipped silently.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from kotaflow.kafka import client_options
from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter

SEEK_MARGIN_MS = 5 * 60_000
"""A dead letter's Kafka time can lag its ``at_ms`` (it is sent after being made): start
this much before ``since`` and filter on ``at_ms``."""
METADATA_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """One dead letter as it sits on the topic."""

    id: str
    """``<partition>:<offset>`` on the dead-letter topic: stable, what ``show`` and
    ``replay`` take."""
    letter: DeadLetter
    timestamp_ms: int
    """The Kafka record's time."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record on the dead-letter topic that is not a dead letter v1."""

    id: str
    error: str


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which dead letters to take; an empty set matches everything."""

    reasons: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, stored: StoredLetter) -> bool:
        letter = stored.letter
        return (
            (not self.ids or stored.id in self.ids)
            and (not self.reasons or letter.reason.value in self.reasons)
            and (not self.devices or (letter.device or "") in self.devices)
            and (not self.stages or letter.stage in self.stages)
            and (self.since_ms is None or letter.at_ms >= self.since_ms)
            and (self.until_ms is None or letter.at_ms < self.until_ms)
        )

    @property
    def narrows(self) -> bool:
        """True if the filter does not match everything (replay refuses to take all)."""
        return bool(self.reasons or self.devices or self.stages or self.ids) or (
            self.since_ms is not None or self.until_ms is not None
        )


@dataclass
class Reading:
    """What one pass over the topic found."""

    letters: list[StoredLetter] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    scanned: int = 0


def parse_id(text: str) -> tuple[int, int]:
    """``"3:1207"`` -> ``(3, 1207)``; raises ValueError naming the expected form."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"dead-letter id {text!r} is not <partition>:<offset> (e.g. 0:42)")
    return int(partition), int(offset)


def parse_time(text: str, now: datetime | None = None) -> int:
    """A time for ``--since``/``--until`` as ms since the epoch: an age (``90s``, ``15m``,
    ``2h``, ``3d``) or an ISO 8601 time (``2026-12-04T10:00``; no offset means UTC)."""
    now = now or datetime.now(UTC)
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit in units and number.replace(".", "", 1).isdigit():
        return int((now - timedelta(**{units[unit]: float(number)})).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (30s, 15m, 2h, 3d) nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def letter_json(stored: StoredLetter, with_payload: bool = False) -> dict[str, Any]:
    """The JSON form ``list --json`` and ``show --json`` print."""
    letter = stored.letter
    out: dict[str, Any] = {
        "id": stored.id,
        "at": iso(letter.at_ms),
        "at_ms": letter.at_ms,
        "stage": letter.stage,
        "reason": letter.reason.value,
        "device": letter.device,
        "metric": letter.metric,
        "message": letter.message,
        "source": letter.source,
        "payload_bytes": len(letter.payload),
    }
    if with_payload:
        try:
            out["payload"] = letter.payload.decode()
        except UnicodeDecodeError:
            out["payload_hex"] = letter.payload.hex()
    return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def stats(letters: Iterable[StoredLetter], now_ms: int | None = None) -> dict[str, Any]:
    """Counts by reason, stage and device, and dead letters per minute by reason over the
    time the letters span (at least one minute)."""
    items = list(letters)
    by_reason = Counter(s.letter.reason.value for s in items)
    out: dict[str, Any] = {
        "total": len(items),
        "by_reason": dict(by_reason.most_common()),
        "by_stage": dict(Counter(s.letter.stage for s in items).most_common()),
        "by_device": dict(Counter(s.letter.device or "" for s in items).most_common()),
    }
    if items:
        first = min(s.letter.at_ms for s in items)
        last = max(s.letter.at_ms for s in items)
        end = max(last, now_ms) if now_ms is not None else last
        minutes = max((end - first) / 60_000, 1.0)
        out["first"], out["last"] = iso(first), iso(last)
        out["per_minute_by_reason"] = {r: round(n / minutes, 3) for r, n in by_reason.items()}
    return out


async def read_letters(
    settings: Settings, wanted: LetterFilter, limit: int | None = None
) -> Reading:
    """The dead letters matching ``wanted``, oldest first per partition (at most ``limit``,
    the newest kept), read up to the end of the topic as it was when reading started."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="kotaflow-deadletter-reader",
    )
    await consumer.start()
    try:
        found = Reading()
        partitions = await _partitions(consumer, settings.kafka.topics.deadletter)
        if not partitions:
            return found
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        if wanted.ids:
            await _read_ids(consumer, wanted, end, found)
        else:
            await _seek_start(consumer, partitions, wanted)
            await _read_to_end(consumer, wanted, end, found)
        found.letters.sort(key=lambda s: (s.letter.at_ms, s.id))
        if limit is not None and len(found.letters) > limit:
            found.letters = found.letters[-limit:]
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    deadline = time.monotonic() + METADATA_TIMEOUT_S
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() >= deadline:
            return []  # the topic does not exist: no dead letters
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


async def _seek_start(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], wanted: LetterFilter
) -> None:
    if wanted.since_ms is None:
        await consumer.seek_to_beginning(*partitions)
        return
    at = max(wanted.since_ms - SEEK_MARGIN_MS, 0)
    offsets = await consumer.offsets_for_times(dict.fromkeys(partitions, at))
    for tp in partitions:
        found = offsets.get(tp)
        if found is None:
            await consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, found.offset)


async def _read_to_end(
    consumer: AIOKafkaConsumer,
    wanted: LetterFilter,
    end: dict[TopicPartition, int],
    found: Reading,
) -> None:
    remaining = {tp for tp, offset in end.items() if await consumer.position(tp) < offset}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
        for tp, records in batch.items():
            for record in records:
                if record.offset < end[tp]:
                    _take(record, wanted, found)
        for tp in list(remaining):
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)


async def _read_ids(
    consumer: AIOKafkaConsumer,
    wanted: LetterFilter,
    end: dict[TopicPartition, int],
    found: Reading,
) -> None:
    by_partition = {tp.partition: tp for tp in end}
    for text in sorted(wanted.ids):
        partition, offset = parse_id(text)
        tp = by_partition.get(partition)
        if tp is None or offset >= end[tp]:
            found.unreadable.append(Unreadable(text, "no such record on the dead-letter topic"))
            continue
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
        records = batch.get(tp, [])
        if not records or records[0].offset != offset:
            found.unreadable.append(Unreadable(text, "record no longer retained"))
            continue
        _take(records[0], wanted, found)


def _take(record: Any, wanted: LetterFilter, found: Reading) -> None:
    found.scanned += 1
    ident = f"{record.partition}:{record.offset}"
    try:
        letter = DeadLetter.from_value(record.value or b"")
    except (ValueError, KeyError, TypeError) as err:
        found.unreadable.append(Unreadable(ident, f"not a dead letter v1: {err!r}"))
        return
    stored = StoredLetter(ident, letter, record.timestamp)
    if wanted.matches(stored):
        found.letters.append(stored)
