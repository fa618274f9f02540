"""One harness per Kafka stage for the stage contract suite (``test_stage_contract.py``).

A harness builds its stage on the in-memory stand-ins (``tests/support/stage_standins.py``),
puts good and poison records on the stage's input topic, and says, from the stand-ins'
state, whether a record's output is durable (``written``) and which records were
dead-lettered. The contract itself is written once, in the test module.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aiokafka.structs import ConsumerRecord

from devices.fleet import load_fleet
from devices.topics import device_topic
from kotaflow.settings import Settings
from kotaflow.wire.raw import DeviceKeyKind, PayloadFormat, RawEnvelope
from kotaflow.wire.readings import ValidReading, readings_of
from processors.aggregate.stage import AggregateStage
from processors.aggregate.windows import window_start
from processors.alerting.engine import Dirty, Engine
from processors.alerting.model import RuleSet
from processors.alerting.stage import AlertStage
from processors.alerting.state_store import DEADLETTER_DESTINATION, AlertStore, Outgoing
from processors.runtime.health import Health
from processors.runtime.kafka_output import KafkaOutput
from processors.runtime.stage_loop import Stage, StageLoop
from processors.store import StoreStage
from processors.validate import ValidateStage
from tests.support.stage_standins import MemoryInflux, MemoryKafka, StandInClients, source_offsets

Record = ConsumerRecord[bytes, bytes]
FAST, NEVER = 0.0, 3600.0
"""Flush intervals: after every poll, or only when the loop forces it (stop, revoke)."""
PER_POLL = 4
"""Records per ``getmany``: a dozen records take several polls and several commits."""


@dataclass
class Env:
    """The stand-ins one test runs a stage on, and what the harness put on its input."""

    settings: Settings
    tmp: Path
    kafka: MemoryKafka = field(default_factory=MemoryKafka)
    influx: MemoryInflux = field(default_factory=MemoryInflux)
    health: Health = field(default_factory=lambda: Health("contract"))
    expected: dict[tuple[int, int], Any] = field(default_factory=dict)
    """(partition, offset) -> what the harness needs to find that good record's output."""
    poison: set[tuple[int, int]] = field(default_factory=set)
    alert_store: FailingAlertStore | None = None

    def __post_init__(self) -> None:
        self.clients = StandInClients(self.kafka, self.influx)


class StageHarness:
    name: ClassVar[str]
    saves_every_poll: ClassVar[bool] = False
    """The stage flushes after every poll whatever its settings (alert: state is saved at once)."""

    def settings(self, base: Settings, flush: float) -> Settings:
        raise NotImplementedError

    def stage(self, env: Env) -> Stage:
        raise NotImplementedError

    def good(self, env: Env, i: int) -> Record:
        """Put the ``i``-th good record on the input (partitions alternate)."""
        raise NotImplementedError

    def written(self, env: Env, record: Record) -> bool:
        raise NotImplementedError

    def dead_lettered(self, env: Env) -> set[tuple[int, int]]:
        return source_offsets(env.kafka, env.settings.kafka.topics.deadletter)

    def fail_writes(self, env: Env) -> None:
        raise NotImplementedError

    def loop(self, base: Settings, tmp: Path, flush: float) -> tuple[Env, StageLoop]:
        env = Env(self.settings(base, flush), tmp)
        stage = self.stage(env)
        return env, StageLoop(stage, env.settings, env.health, env.clients)

    def poison(self, env: Env, partition: int) -> Record:
        """A record that is not what the input topic carries."""
        record = env.kafka.append(self.input(env), partition, b"poison", b"\xffnot a record")
        env.poison.add((partition, record.offset))
        return record

    def input(self, env: Env) -> str:
        return env.settings.kafka.topics.readings

    def output(self, env: Env) -> KafkaOutput:
        return KafkaOutput(env.settings, env.health, "contract", env.clients)


def _processing(base: Settings, section: str, **changes: Any) -> Settings:
    processing = base.processing
    updated = getattr(processing, section).model_copy(
        update={"max_records": PER_POLL, "poll_timeout_ms": 5, **changes}
    )
    return base.model_copy(update={"processing": processing.model_copy(update={section: updated})})


def _reading(i: int, now_ms: int) -> ValidReading:
    """Good reading ``i``: its own minute, half an hour ago (within lateness, windows closable)."""
    start = window_start(now_ms) - 30 * 60_000
    return ValidReading(
        f"dev-{i % 2}", "weather", "Langke Rembong", "temperature", 20.0 + i, "Cel",
        start + i * 60_000,
    )  # fmt: skip


class ReadingsHarness(StageHarness):
    """Stages that consume ``kotaflow.readings``: store, aggregate, alert."""

    def good(self, env: Env, i: int) -> Record:
        reading = _reading(i, time.time_ns() // 1_000_000)
        record = env.kafka.append(self.input(env), i % 2, reading.key(), reading.value_bytes())
        env.expected[(record.partition, record.offset)] = reading
        return record


class ValidateHarness(StageHarness):
    name = "validate"

    def settings(self, base: Settings, flush: float) -> Settings:
        return _processing(base, "validation", flush_interval_s=flush, linger_ms=0)

    def stage(self, env: Env) -> Stage:
        return ValidateStage(env.settings, env.health, self.output(env))

    def input(self, env: Env) -> str:
        return env.settings.kafka.topics.raw

    def good(self, env: Env, i: int) -> Record:
        fleet = load_fleet(env.settings)
        device = [d for d in fleet.registry if d.enabled][i % 2]
        values = {name: (m.minimum + m.maximum) / 2 for name, m in fleet.metrics_of(device).items()}
        ts = 1_764_300_000_000 + i * 1000
        body = json.dumps({"ts": ts, "values": values}).encode()
        topic = device_topic(PayloadFormat.NATIVE_JSON, device.id)
        envelope = RawEnvelope(
            body, topic, device.id, DeviceKeyKind.DEVICE_ID, PayloadFormat.NATIVE_JSON, ts + 50
        )
        record = env.kafka.append(
            self.input(env), i % 2, envelope.key(), envelope.payload, envelope.headers()
        )
        env.expected[(record.partition, record.offset)] = (device.id, ts)
        return record

    def written(self, env: Env, record: Record) -> bool:
        device, ts = env.expected[(record.partition, record.offset)]
        for produced in env.kafka.on(env.settings.kafka.topics.readings):
            if produced.key == device.encode() and any(
                r.ts_ms == ts for r in readings_of(produced.value)
            ):
                return True
        return False

    def fail_writes(self, env: Env) -> None:
        env.kafka.fail_deliveries = True


class StoreHarness(ReadingsHarness):
    name = "store"

    def settings(self, base: Settings, flush: float) -> Settings:
        return _processing(
            base, "store", flush_interval_s=flush, idle_flush_s=flush, commit_interval_s=flush
        )

    def stage(self, env: Env) -> Stage:
        return StoreStage(env.settings, env.health, self.output(env), env.influx)

    def written(self, env: Env, record: Record) -> bool:
        r: ValidReading = env.expected[(record.partition, record.offset)]
        lines = env.influx.lines.get(env.settings.influxdb.telemetry_bucket, [])
        return any(f"device={r.device}" in x and x.endswith(f" {r.ts_ms}") for x in lines)

    def fail_writes(self, env: Env) -> None:
        env.influx.fail = True


class AggregateHarness(ReadingsHarness):
    name = "aggregate"

    def settings(self, base: Settings, flush: float) -> Settings:
        return _processing(
            base,
            "aggregate",
            flush_interval_s=flush,
            rollup_interval_s=flush,
            grace_s=0.0,
            wait_for_store=False,
        )

    def stage(self, env: Env) -> Stage:
        return AggregateStage(env.settings, env.health, self.output(env), env.influx, env.clients)

    def written(self, env: Env, record: Record) -> bool:
        r: ValidReading = env.expected[(record.partition, record.offset)]
        lines = env.influx.lines.get(env.settings.influxdb.rollups_bucket, [])
        start = window_start(r.ts_ms)
        return any(
            f"device={r.device}" in x and "window=1m" in x and x.endswith(f" {start}")
            for x in lines
        )

    def fail_writes(self, env: Env) -> None:
        env.influx.fail = True


class FailingAlertStore(AlertStore):
    """The real SQLite store; with ``fail`` set its transaction fails (a full disk)."""

    fail = False

    def save(
        self, dirty: Dirty, partition_of: dict[str, int], outgoing: Iterable[Outgoing], now_ms: int
    ) -> int:
        if self.fail:
            raise sqlite3.OperationalError("database or disk is full (stand-in)")
        return super().save(dirty, partition_of, outgoing, now_ms)


class AlertHarness(ReadingsHarness):
    name = "alert"
    saves_every_poll = True

    def settings(self, base: Settings, flush: float) -> Settings:
        alerting = base.alerting.model_copy(
            update={"max_records": PER_POLL, "poll_timeout_ms": 5, "tick_s": 3600}
        )
        return base.model_copy(update={"alerting": alerting})

    def stage(self, env: Env) -> Stage:
        env.alert_store = FailingAlertStore(_db(env))
        engine = Engine(RuleSet((), "contract"), started_ms=0, caught_up=set())
        return AlertStage(env.settings, engine, env.alert_store, queued=lambda: None)

    def written(self, env: Env, record: Record) -> bool:
        r: ValidReading = env.expected[(record.partition, record.offset)]
        with closing(sqlite3.connect(_db(env))) as db:
            row = db.execute("SELECT data FROM devices WHERE device = ?", (r.device,)).fetchone()
        return row is not None and json.loads(row[0])["last_ms"] >= r.ts_ms

    def dead_lettered(self, env: Env) -> set[tuple[int, int]]:
        with closing(sqlite3.connect(_db(env))) as db:
            rows = db.execute(
                "SELECT event_id FROM outbox WHERE destination = ?", (DEADLETTER_DESTINATION,)
            ).fetchall()
        out = set()
        for (event_id,) in rows:
            _, partition, offset = event_id.rsplit("/", 2)
            out.add((int(partition), int(offset)))
        return out

    def fail_writes(self, env: Env) -> None:
        assert env.alert_store is not None
        env.alert_store.fail = True


def _db(env: Env) -> Path:
    return env.tmp / "alerts.sqlite"


HARNESSES: list[StageHarness] = [
    ValidateHarness(),
    StoreHarness(),
    AggregateHarness(),
    AlertHarness(),
]
