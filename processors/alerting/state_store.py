"""Alerting's durable state: one SQLite file (WAL, ``synchronous=FULL``).

Tables: ``devices`` (last seen, type, kecamatan), ``series`` (sliding-window samples),
``states`` (per rule and device), ``outbox`` (one row per destination and event: receivers,
plus ``_kafka`` and ``_influxdb``; a grouped row is held until its group's window closes),
``silences``, ``acks`` (who acknowledged which alert episode, when). Rows carry the Kafka
partition of their device, so an instance loads only what its assigned partitions need.

:meth:`AlertStore.save` writes a batch's state changes and its outgoing messages in one
transaction; the consumer commits Kafka offsets only after it returns. That ordering is the
whole delivery guarantee: a crash before the transaction replays the readings (and the
engine ignores what it already holds); a crash after it loses nothing, because the outbox
is on disk. Several processes may share the file (the CLI adds silences while ``kotaflow
alert`` runs); SQLite serialises the writers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.alerting.acks import Ack
from processors.alerting.engine import Dirty, SeriesKey, StateKey
from processors.alerting.silences import Silence

KAFKA_DESTINATION = "_kafka"
INFLUX_DESTINATION = "_influxdb"
DEADLETTER_DESTINATION = "_deadletter"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY, partition INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    device TEXT NOT NULL, metric TEXT NOT NULL, partition INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (device, metric));
CREATE TABLE IF NOT EXISTS states (
    rule TEXT NOT NULL, device TEXT NOT NULL, partition INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (rule, device));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL, event_id TEXT NOT NULL, payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL, next_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending', last_error TEXT, done_ms INTEGER,
    partition INTEGER NOT NULL DEFAULT -1,
    UNIQUE (destination, event_id));
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (destination, status, id);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, ends_ms INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acks (
    rule TEXT NOT NULL, device TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (rule, device));
"""
_OUTBOX_ADDED = {
    "partition": "INTEGER NOT NULL DEFAULT -1",
    "group_key": "TEXT",
    "hold_until_ms": "INTEGER NOT NULL DEFAULT 0",
}
"""Columns added to ``outbox`` since its first version (older state files get them)."""


class NotFiringError(LookupError):
    """``alerts ack`` named an alert that is not firing."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    destination: str
    event_id: str
    payload: dict[str, Any]
    attempts: int
    next_ms: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    destination: str
    event_id: str
    payload: dict[str, Any]
    partition: int = -1
    """Kafka partition of the device; -1: look it up from the payload's device."""
    group: str | None = None
    """Group key (rule|kecamatan): join the open group of this destination, else open one."""
    hold_ms: int = 0
    """A new group is held this long (its window) before it is delivered as one message."""
    device: str | None = None
    """The device of a notification; a later change of a device whose fired row is still
    held waits for that group, so the receiver never sees them out of order."""


class AlertStore:
    """One connection per instance; create it inside the process (and thread) that uses it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for column, kind in _OUTBOX_ADDED.items():
            if column not in columns:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self._db.close()

    # -- engine state --------------------------------------------------------------------

    def save(
        self, dirty: Dirty, partition_of: dict[str, int], outgoing: Iterable[Outgoing], now_ms: int
    ) -> int:
        """Write state changes and queue messages atomically; the number of new messages."""
        queued = 0
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO devices VALUES (?, ?, ?)",
                [(d, partition_of.get(d, -1), _dump(v)) for d, v in dirty.devices.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?)",
                [(d, m, partition_of.get(d, -1), _dump(v)) for (d, m), v in dirty.series.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?)",
                [(r, d, partition_of.get(d, -1), _dump(v)) for (r, d), v in dirty.states.items()],
            )
            for item in outgoing:
                partition = item.partition
                if partition < 0:
                    partition = partition_of.get(str(item.payload.get("device")), -1)
                group, hold_until = _hold(db, item, now_ms)
                cursor = db.execute(
                    "INSERT OR IGNORE INTO outbox (destination, event_id, payload, created_ms,"
                    " next_ms, partition, group_key, hold_until_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.destination,
                        item.event_id,
                        _dump(item.payload),
                        now_ms,
                        now_ms,
                        partition,
                        group,
                        hold_until,
                    ),
                )
                queued += cursor.rowcount
        return queued

    def load(
        self, partitions: set[int] | None = None
    ) -> tuple[
        list[tuple[str, dict[str, Any]]],
        list[tuple[SeriesKey, dict[str, Any]]],
        list[tuple[StateKey, dict[str, Any]]],
    ]:
        """Saved devices, series and states (of ``partitions``, or all)."""
        where, args = _partition_filter(partitions)
        devices = [
            (row[0], json.loads(row[1]))
            for row in self._db.execute(f"SELECT device, data FROM devices{where}", args)
        ]
        series = [
            ((row[0], row[1]), json.loads(row[2]))
            for row in self._db.execute(f"SELECT device, metric, data FROM series{where}", args)
        ]
        states = [
            ((row[0], row[1]), json.loads(row[2]))
            for row in self._db.execute(f"SELECT rule, device, data FROM states{where}", args)
        ]
        return devices, series, states

    def firing(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(rule, device, state) of every alert that is firing, for ``alerts status``."""
        rows = self._db.execute("SELECT rule, device, data FROM states ORDER BY rule, device")
        return [(r, d, s) for r, d, raw in rows if (s := json.loads(raw))["level"] is not None]

    # -- acknowledgements ----------------------------------------------------------------

    def acknowledge(
        self,
        rule: str,
        device: str,
        by: str,
        note: str,
        now_ms: int,
        *,
        episode: int | None = None,
        level: str | None = None,
    ) -> Ack:
        """Acknowledge the firing alert ``rule/device``, durably: at its current level, or at
        ``level`` of ``episode`` (an acknowledge link: what the reader saw)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT data FROM states WHERE rule = ? AND device = ?", (rule, device)
            ).fetchone()
            state = json.loads(row[0]) if row else None
            if state is None or state["level"] is None or state["started_ms"] is None:
                raise NotFiringError(
                    f"{rule}/{device} is not firing (see 'kotaflow alerts status')"
                )
            if episode is not None and episode != state["started_ms"]:
                raise NotFiringError(f"{rule}/{device}: that alert is over (it fired again since)")
            at_level = level or state["level"]
            ack = Ack(rule, device, state["started_ms"], at_level, by, note, now_ms)
            db.execute(
                "INSERT OR REPLACE INTO acks VALUES (?, ?, ?)", (rule, device, _dump(ack.to_json()))
            )
        return ack

    def acks(self) -> dict[tuple[str, str], Ack]:
        rows = self._db.execute("SELECT rule, device, data FROM acks")
        return {(r, d): Ack.from_json(json.loads(raw)) for r, d, raw in rows}

    # -- outbox --------------------------------------------------------------------------

    def next_batch(
        self,
        destination: str,
        limit: int,
        partitions: set[int] | None = None,
        now_ms: int | None = None,
    ) -> list[OutboxItem]:
        """The oldest undelivered messages for ``destination`` (delivered in order).

        With ``partitions``, only those of devices on these Kafka partitions: each evaluator
        process delivers what its own partitions queued, so two never send the same row.
        Rows held for a group window are skipped until it closes; when the oldest row
        belongs to a group, the batch is the whole group (one message).
        """
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        where, args = _owned_filter(partitions)
        columns = "id, destination, event_id, payload, attempts, next_ms, created_ms, group_key"
        rows = self._db.execute(
            f"SELECT {columns} FROM outbox WHERE destination = ? AND status = 'pending'"
            f" AND hold_until_ms <= ?{where} ORDER BY id LIMIT ?",
            (destination, now_ms, *args, limit),
        ).fetchall()
        if rows and rows[0][7] is not None:
            rows = self._db.execute(
                f"SELECT {columns} FROM outbox WHERE destination = ? AND status = 'pending'"
                f" AND group_key = ?{where} ORDER BY id",
                (destination, rows[0][7], *args),
            ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def next_hold_ms(self, destination: str, now_ms: int) -> int | None:
        """When the next held group of ``destination`` is due (None: nothing held)."""
        row = self._db.execute(
            "SELECT MIN(hold_until_ms) FROM outbox WHERE destination = ? AND status = 'pending'"
            " AND hold_until_ms > ?",
            (destination, now_ms),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def delivered(self, ids: Iterable[int], now_ms: int) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET status = 'sent', done_ms = ?, attempts = attempts + 1"
                " WHERE id = ?",
                [(now_ms, i) for i in ids],
            )

    def retry_later(self, item_id: int, next_ms: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_ms = ?, last_error = ?"
                " WHERE id = ?",
                (next_ms, error[:1000], item_id),
            )

    def failed(self, item_id: int, now_ms: int, error: str) -> None:
        """A permanent refusal (e.g. HTTP 400): kept for inspection, no longer retried."""
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, done_ms = ?,"
                " last_error = ? WHERE id = ?",
                (now_ms, error[:1000], item_id),
            )

    def outbox_summary(self) -> list[tuple[str, str, int, str | None]]:
        """(destination, status, count, last error) for ``alerts outbox``."""
        rows = self._db.execute(
            "SELECT destination, status, COUNT(*), MAX(last_error) FROM outbox"
            " GROUP BY destination, status ORDER BY destination, status"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def pending(self) -> dict[str, tuple[int, int]]:
        """Destination -> (messages pending, created_ms of the oldest), for the metrics."""
        rows = self._db.execute(
            "SELECT destination, COUNT(*), MIN(created_ms) FROM outbox WHERE status = 'pending'"
            " GROUP BY destination"
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def purge_delivered(self, before_ms: int) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM outbox WHERE status = 'sent' AND done_ms < ?", (before_ms,)
            )
            return cursor.rowcount

    # -- silences ------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO silences VALUES (?, ?, ?)",
                (silence.id, silence.ends_ms, _dump(silence.to_json())),
            )

    def silences(self, include_expired_after_ms: int | None = None) -> list[Silence]:
        """Silences not yet over (or over since ``include_expired_after_ms``)."""
        since = include_expired_after_ms if include_expired_after_ms is not None else 0
        rows = self._db.execute(
            "SELECT data FROM silences WHERE ends_ms > ? ORDER BY ends_ms", (since,)
        )
        return [Silence.from_json(json.loads(row[0])) for row in rows]

    def expire_silence(self, silence_id: str, now_ms: int) -> Silence | None:
        """End a silence now; None if no such silence (ids may be abbreviated to a prefix)."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT data FROM silences WHERE id LIKE ? || '%'", (silence_id,)
            ).fetchall()
            if len(rows) != 1:
                return None
            data = json.loads(rows[0][0])
            data["ends_ms"] = min(data["ends_ms"], now_ms)
            data["starts_ms"] = min(data["starts_ms"], data["ends_ms"])
            silence = Silence.from_json(data)
            db.execute(
                "UPDATE silences SET ends_ms = ?, data = ? WHERE id = ?",
                (silence.ends_ms, _dump(silence.to_json()), silence.id),
            )
            return silence

    # -- helpers -------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _hold(db: sqlite3.Connection, item: Outgoing, now_ms: int) -> tuple[str | None, int]:
    """The group key and hold time of a new outbox row (see :class:`Outgoing`)."""
    if item.group is not None:
        row = db.execute(
            "SELECT group_key, hold_until_ms FROM outbox WHERE destination = ?"
            " AND status = 'pending' AND substr(group_key, 1, ?) = ? AND hold_until_ms > ?"
            " ORDER BY id DESC LIMIT 1",
            (item.destination, len(item.group) + 1, f"{item.group}@", now_ms),
        ).fetchone()
        if row is not None:
            return str(row[0]), int(row[1])
        return f"{item.group}@{now_ms}", now_ms + item.hold_ms
    if item.device is not None:
        prefix = f"{item.payload.get('rule')}/{item.device}/"
        row = db.execute(
            "SELECT MAX(hold_until_ms) FROM outbox WHERE destination = ? AND status = 'pending'"
            " AND substr(event_id, 1, ?) = ? AND hold_until_ms > ?",
            (item.destination, len(prefix), prefix, now_ms),
        ).fetchone()
        if row is not None and row[0] is not None:
            return None, int(row[0])
    return None, 0


def _owned_filter(partitions: set[int] | None) -> tuple[str, list[int]]:
    if partitions is None:
        return "", []
    marks = ",".join("?" * len(partitions))
    return f" AND partition IN ({marks or 'NULL'}, -1)", sorted(partitions)


def _partition_filter(partitions: set[int] | None) -> tuple[str, list[int]]:
    if partitions is None:
        return "", []
    marks = ",".join("?" * len(partitions)) or "NULL"
    return f" WHERE partition IN ({marks})", sorted(partitions)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
