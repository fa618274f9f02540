"""Replaying dead letters through the stage that refused them.

A letter refused by the bridge or by validate (its payload is the device's bytes) goes back
on ``kotaflow.raw`` as the raw envelope the bridge would have written: same MQTT topic,
device key and format, and the **original receive time** (``source.rx_ms``, which validate
records; else the raw record it came from, if Kafka still has it; for the bridge, the time
it dead-lettered the message, which is when it received it). Validate then decodes it with
today's registry and catalogue, so a reading without its own timestamp gets the time it
would have got the first time, and store writes the same point: InfluxDB overwrites a
point of the same series and time, so replaying twice changes nothing stored. A letter
refused by store, aggregate or alert (its payload is a readings record) goes back on
``kotaflow.readings``; every consumer of that topic sees it again (store overwrites,
aggregate drops duplicates).

Before sending, each letter is judged with today's files (:func:`plan`): one that would be
refused again is not sent (it would only make another dead letter) unless forced, and one
already replayed (the replay log) is skipped unless asked again. Each replay is recorded:
a line in the replay log (who, when, which ids, how many) and a point in the health
measurement (``instance=deadletter-replay``), so dashboards and ``kotaflow status`` see it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import socket
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from devices.decoding import DecodeContext
from devices.fleet import Fleet
from devices.topics import match_topic
from kotaflow.kafka import client_options
from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.raw import EnvelopeError, Headers, RawEnvelope, parse_envelope
from kotaflow.wire.readings import RecordError, readings_of
from processors.deadletters.reader import StoredLetter
from processors.runtime.kafka_clients import make_producer
from processors.runtime.lineprotocol import line, series_prefix
from processors.validate import ReadingEncoder, judge_message

RAW_STAGES = frozenset({"bridge", "validate"})
"""Stages whose dead letters hold device bytes (replayed on the raw topic)."""
REPLAY_HEADER = "kf.replay"
"""Header on a replayed record: ``<dead-letter topic>/<id>`` it came from."""
HEALTH_INSTANCE = "deadletter-replay"


class Action(StrEnum):
    REPLAY = "replay"
    """Sent (or, in a dry run, would be sent) back to the stage."""
    STILL_REFUSED = "still_refused"
    """Today's files would refuse it again: not sent unless forced."""
    ALREADY_REPLAYED = "already_replayed"
    """In the replay log already: not sent again unless asked."""
    CANNOT = "cannot"
    """Not enough left to rebuild what the stage read (said why)."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """The record a replay sends."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What replaying one dead letter does."""

    id: str
    stage: str
    reason: str
    device: str | None
    action: Action
    readings: int = 0
    """Readings the stage would pass on now."""
    refusals: tuple[str, ...] = ()
    """``reason: message`` of what it would refuse now."""
    rx_ms: int | None = None
    note: str = ""
    record: Outbound | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "reason": self.reason,
            "device": self.device,
            "action": self.action.value,
            "readings": self.readings,
            "refusals": list(self.refusals),
            "rx_ms": self.rx_ms,
            "note": self.note,
            "target": self.record.topic if self.record else None,
        }


def plan(
    settings: Settings,
    fleet: Fleet,
    letters: Iterable[StoredLetter],
    originals: dict[str, RawEnvelope] | None = None,
    already: set[str] | None = None,
    *,
    force: bool = False,
    again: bool = False,
) -> list[Plan]:
    """Judge each letter with ``fleet`` (today's registry and catalogue); pure, no I/O.

    ``originals``: raw envelopes fetched back from Kafka for letters that lack
    ``source.rx_ms`` (see :func:`fetch_originals`), by letter id."""
    ctx = DecodeContext(fleet)
    encoder = ReadingEncoder(fleet)
    out: list[Plan] = []
    firsts: dict[tuple[Any, ...], Plan] = {}
    for stored in letters:
        letter = stored.letter
        base = Plan(stored.id, letter.stage, letter.reason.value, letter.device, Action.CANNOT)
        if already and stored.id in already and not again:
            out.append(replace(base, action=Action.ALREADY_REPLAYED, note="see the replay log"))
            continue
        origin = _position(letter)
        first = firsts.get(origin) if origin is not None else None
        if first is not None:  # another refusal of one message (a reading each): send it once
            same = f"same message as {first.id}"
            out.append(replace(first, id=stored.id, reason=base.reason, note=same, record=None))
            continue
        if is_raw_level(settings, letter):
            found = _raw_plan(settings, stored, ctx, encoder, (originals or {}).get(stored.id))
        else:
            found = _readings_plan(settings, stored)
        if isinstance(found, str):
            out.append(replace(base, note=found))
            continue
        readings, refusals, rx_ms, record, note = found
        action = Action.REPLAY if readings or force else Action.STILL_REFUSED
        planned = replace(
            base,
            action=action,
            readings=readings,
            refusals=tuple(refusals),
            rx_ms=rx_ms,
            note=note,
            record=record,
        )
        if origin is not None:
            firsts[origin] = planned
        out.append(planned)
    return out


def _position(letter: DeadLetter) -> tuple[Any, ...] | None:
    """Where the refused record was in Kafka (one message can give several letters)."""
    source = letter.source
    if "kafka_topic" not in source or "offset" not in source:
        return None
    return (source["kafka_topic"], source.get("partition"), source["offset"])


def is_raw_level(settings: Settings, letter: DeadLetter) -> bool:
    """True if the letter's payload is the device's bytes (bridge, validate)."""
    if letter.stage in RAW_STAGES:
        return True
    return letter.source.get("kafka_topic") == settings.kafka.topics.raw


_Found = tuple[int, list[str], int | None, Outbound, str]


def _raw_plan(
    settings: Settings,
    stored: StoredLetter,
    ctx: DecodeContext,
    encoder: ReadingEncoder,
    original: RawEnvelope | None,
) -> _Found | str:
    letter = stored.letter
    limit = settings.bridge.max_payload_bytes
    if len(letter.payload) > limit:
        return f"payload {len(letter.payload)} bytes > bridge limit {limit}"
    note = ""
    if original is not None:
        env = original._replace(payload=letter.payload)
    else:
        topic = letter.source.get("mqtt_topic")
        if not isinstance(topic, str):
            return "the dead letter names no MQTT topic (a broken envelope): nothing to rebuild"
        match = match_topic(topic)
        if match is None:
            return f"MQTT topic {topic!r} matches no device topic"
        rx_ms = letter.source.get("rx_ms")
        if not isinstance(rx_ms, int):
            rx_ms = letter.at_ms
            if letter.stage != "bridge":
                note = "receive time unknown (record gone from the raw topic): dead-letter time"
        env = RawEnvelope(
            letter.payload, topic, match.device_key, match.key_kind, match.format, rx_ms
        )
    readings, refused = judge_message(env, ctx, encoder)
    refusals = [f"{r.reason.value}: {r.message}" for r in refused]
    headers = [*env.headers(), (REPLAY_HEADER, _origin(settings, stored))]
    record = Outbound(settings.kafka.topics.raw, env.key(), env.payload, headers, env.rx_ms)
    return len(readings), refusals, env.rx_ms, record, note


def _readings_plan(settings: Settings, stored: StoredLetter) -> _Found | str:
    letter = stored.letter
    try:
        readings = readings_of(letter.payload)
    except RecordError as err:
        return 0, [f"{letter.reason.value}: {err}"], None, _readings_out(settings, stored), ""
    good = [r for r in readings if math.isfinite(r.value)]
    refusals = [f"not_finite: {r.metric}" for r in readings if not math.isfinite(r.value)]
    return len(good), refusals, None, _readings_out(settings, stored), ""


def _readings_out(settings: Settings, stored: StoredLetter) -> Outbound:
    letter = stored.letter
    headers = [(REPLAY_HEADER, _origin(settings, stored))]
    key = letter.device.encode() if letter.device else None
    return Outbound(settings.kafka.topics.readings, key, letter.payload, headers, letter.at_ms)


def _origin(settings: Settings, stored: StoredLetter) -> bytes:
    return f"{settings.kafka.topics.deadletter}/{stored.id}".encode()


def needs_original(settings: Settings, stored: StoredLetter) -> bool:
    """A validate letter without ``source.rx_ms`` (written before validate recorded it)."""
    letter = stored.letter
    return (
        letter.stage == "validate"
        and "rx_ms" not in letter.source
        and letter.source.get("kafka_topic") == settings.kafka.topics.raw
        and isinstance(letter.source.get("offset"), int)
    )


async def fetch_originals(
    settings: Settings, letters: Iterable[StoredLetter]
) -> dict[str, RawEnvelope]:
    """The raw records the letters were made from, where Kafka still keeps them."""
    wanted = [s for s in letters if needs_original(settings, s)]
    if not wanted:
        return {}
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, client_id="kotaflow-replay"
    )
    await consumer.start()
    found: dict[str, RawEnvelope] = {}
    try:
        topic = settings.kafka.topics.raw
        tps = [TopicPartition(topic, s.letter.source["partition"]) for s in wanted]
        consumer.assign(list(set(tps)))
        for stored, tp in zip(wanted, tps, strict=True):
            offset = stored.letter.source["offset"]
            consumer.seek(tp, offset)
            batch = await consumer.getmany(tp, timeout_ms=3000, max_records=1)
            records = batch.get(tp, [])
            if records and records[0].offset == offset:
                try:
                    found[stored.id] = parse_envelope(records[0].value, records[0].headers)
                except EnvelopeError:
                    continue
    finally:
        await consumer.stop()
    return found


async def send(settings: Settings, plans: Iterable[Plan]) -> int:
    """Send the records of the plans marked :attr:`Action.REPLAY`; how many. Waits until
    Kafka acknowledged every one (raises if one failed)."""
    records = [p.record for p in plans if p.action is Action.REPLAY and p.record is not None]
    if not records:
        return 0
    producer = make_producer(settings, "kotaflow-deadletter-replay")
    await producer.start()
    try:
        futures = [
            await producer.send(
                r.topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records)


@dataclass
class ReplayRecord:
    """One replay, as the replay log keeps it."""

    topic: str
    ids: list[str]
    replayed: int
    """Dead letters replayed."""
    sent: int
    """Records sent for them (one per original message)."""
    still_refused: int
    skipped: int
    by_stage: dict[str, int] = field(default_factory=dict)
    user: str = field(default_factory=lambda: _who())
    at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def as_json(self) -> dict[str, Any]:
        return {
            "at_ms": self.at_ms,
            "user": self.user,
            "topic": self.topic,
            "replayed": self.replayed,
            "sent": self.sent,
            "still_refused": self.still_refused,
            "skipped": self.skipped,
            "by_stage": self.by_stage,
            "ids": self.ids,
        }


def summary(settings: Settings, plans: list[Plan]) -> ReplayRecord:
    sent = [p for p in plans if p.action is Action.REPLAY]
    return ReplayRecord(
        topic=settings.kafka.topics.deadletter,
        ids=[p.id for p in sent],
        replayed=len(sent),
        sent=sum(p.record is not None for p in sent),
        still_refused=sum(p.action is Action.STILL_REFUSED for p in plans),
        skipped=sum(p.action in (Action.ALREADY_REPLAYED, Action.CANNOT) for p in plans),
        by_stage=dict(Counter(p.stage for p in sent)),
    )


def default_log(settings: Settings) -> Path:
    return settings.stack.state_dir / "deadletter" / "replays.jsonl"


def replayed_ids(log_file: Path, topic: str) -> set[str]:
    """Ids of ``topic``'s dead letters the replay log says were replayed."""
    done: set[str] = set()
    try:
        lines = log_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return done
    for text in lines:
        try:
            entry = json.loads(text)
        except ValueError:
            continue  # a torn last line (a crash mid-write) loses nothing else
        if isinstance(entry, dict) and entry.get("topic") == topic:
            done.update(str(i) for i in entry.get("ids", []))
    return done


def append_log(log_file: Path, record: ReplayRecord) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record.as_json(), separators=(",", ":")) + "\n")


def health_lines(settings: Settings, record: ReplayRecord) -> list[str]:
    """The replay as points of the health measurement, one per stage replayed into."""
    measurement = settings.processing.health.measurement
    out = []
    for stage, n in sorted(record.by_stage.items()):
        tags = {"instance": HEALTH_INSTANCE, "stage": stage, "topic": record.topic}
        tags["user"] = record.user
        fields = [("replayed", f"{n}i"), ("still_refused", f"{record.still_refused}i")]
        out.append(line(series_prefix(measurement, tags), fields, record.at_ms))
    return out


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
