"""The edge's durable queue: every message the local broker handed over, until the central
broker confirmed it.

One SQLite file (stdlib ``sqlite3``) in WAL mode, one table, one row per message, keyed by
an autoincrement sequence: arrival order is the row order, so each device's messages come
out in the order they went in, and a sequence number is never reused (a delete of the
highest row cannot make a later row take its place, which ``INTEGER PRIMARY KEY`` alone
would allow).

Durability rules (the edge's "nothing lost" rests on these three):

* **fsync policy: ``synchronous=FULL``.** In WAL mode FULL syncs the log on every commit,
  so a committed batch survives a power cut, not only a kill -9. That matters because the
  edge acks the local broker right after the commit: with ``NORMAL`` a power cut could roll
  back batches the local broker already forgot. The cost is one fsync per *batch*, not per
  message: :meth:`EdgeQueue.append` takes a whole burst (the gateway collects for
  ``edge.batch_ms``), which is what keeps an SD card alive.
* **Delete only after the central PUBACK** (:meth:`EdgeQueue.delete`, called by the
  gateway with the sequences the central broker acknowledged). A crash between PUBACK and
  delete sends those messages again: duplicates, never a loss. Deletes are batched too.
* **A byte budget** (``budget_bytes``): past ``alarm_fraction`` of it the queue reports
  :attr:`Level.ALARM` (a metric and a log line, hours before it matters); at the budget
  :meth:`EdgeQueue.append` raises :class:`QueueFullError` and writes nothing, so the gateway
  stops acking and the local broker keeps the messages.

The byte count is the stored bytes of topic, payload and properties plus a fixed
per-row overhead (:data:`ROW_OVERHEAD`), kept in memory and rebuilt from the file on open.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

ROW_OVERHEAD = 64
"""Bytes counted per row beside its data: sequence, times, flags and SQLite's own record
and page overhead: with it the count matches the file (113 bytes per 49-byte message
measured, docs/edge.md)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    rx_ms INTEGER NOT NULL,
    props TEXT,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    rx_ms INTEGER NOT NULL,
    props TEXT,
    reason TEXT NOT NULL,
    refused_ms INTEGER NOT NULL
);
"""


class Level(StrEnum):
    """How full the byte budget is."""

    OK = "ok"
    ALARM = "alarm"
    FULL = "full"


class QueueFullError(RuntimeError):
    """The byte budget has no room for this batch: nothing of it was written."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as the local broker delivered it, before it has a sequence."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    rx_ms: int
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()

    def props_json(self) -> str | None:
        if self.content_type is None and not self.user_properties:
            return None
        return json.dumps({"ct": self.content_type, "up": list(self.user_properties)})

    def size(self) -> int:
        props = self.props_json()
        return len(self.topic) + len(self.payload) + len(props or "") + ROW_OVERHEAD


@dataclass(frozen=True, slots=True)
class Queued:
    """A stored message: what the gateway forwards, with the sequence it deletes by."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    rx_ms: int
    content_type: str | None
    user_properties: tuple[tuple[str, str], ...]
    size: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    messages: int
    bytes: int
    oldest_rx_ms: int | None
    refused: int
    budget_bytes: int
    level: Level

    def oldest_age_s(self, now_ms: int | None = None) -> float:
        if self.oldest_rx_ms is None:
            return 0.0
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return max(0.0, (now - self.oldest_rx_ms) / 1000)


class EdgeQueue:
    """The queue file; one instance per process, used from one thread."""

    def __init__(self, path: Path, budget_bytes: int, alarm_fraction: float = 0.5) -> None:
        if not 0 < alarm_fraction < 1:
            raise ValueError("alarm_fraction must be between 0 and 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.budget_bytes = budget_bytes
        self.alarm_bytes = int(budget_bytes * alarm_fraction)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
        ).fetchone()
        self._messages = int(count)
        self._bytes = int(total)

    def close(self) -> None:
        self._db.close()

    # -- writing -----------------------------------------------------------------------

    def append(self, batch: Sequence[Incoming]) -> None:
        """Store ``batch`` in one transaction (one fsync); QueueFullError if it does not fit."""
        if not batch:
            return
        rows = [
            (m.topic, m.payload, m.qos, int(m.retain), m.rx_ms, m.props_json(), m.size())
            for m in batch
        ]
        added = sum(r[6] for r in rows)
        if self._bytes + added > self.budget_bytes:
            raise QueueFullError(
                f"edge queue {self.path}: {self._bytes + added} bytes would exceed the "
                f"budget of {self.budget_bytes}"
            )
        with self._transaction():
            self._db.executemany(
                "INSERT INTO messages (topic, payload, qos, retain, rx_ms, props, size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        self._messages += len(rows)
        self._bytes += added

    def delete(self, seqs: Iterable[int]) -> None:
        """Forget messages the central broker acknowledged (one transaction)."""
        keys = [(s,) for s in seqs]
        if not keys:
            return
        with self._transaction():
            freed = self._freed(keys)
            self._db.executemany("DELETE FROM messages WHERE seq = ?", keys)
        self._account(freed)

    def refuse(self, refusals: Iterable[tuple[int, str]]) -> None:
        """Move messages the central broker refused (with its reason) out of the queue into
        the ``refused`` table, so one bad message never blocks the rest and none vanishes."""
        items = list(refusals)
        if not items:
            return
        now = int(time.time() * 1000)
        with self._transaction():
            freed = self._freed([(s,) for s, _ in items])
            self._db.executemany(
                "INSERT OR REPLACE INTO refused (seq, topic, payload, rx_ms, props, reason, "
                "refused_ms) SELECT seq, topic, payload, rx_ms, props, ?, ? FROM messages "
                "WHERE seq = ?",
                [(reason, now, s) for s, reason in items],
            )
            self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s, _ in items])
        self._account(freed)

    def _freed(self, keys: list[tuple[int]]) -> tuple[int, int]:
        count = total = 0
        for (seq,) in keys:
            row = self._db.execute("SELECT size FROM messages WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                count += 1
                total += int(row[0])
        return count, total

    def _account(self, freed: tuple[int, int]) -> None:
        self._messages -= freed[0]
        self._bytes -= freed[1]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # -- reading -----------------------------------------------------------------------

    def take(self, after: int, limit: int, up_to: int | None = None) -> list[Queued]:
        """Up to ``limit`` messages with ``after < seq <= up_to``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, rx_ms, props, size FROM messages "
            "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, up_to if up_to is not None else 2**62, limit),
        ).fetchall()
        return [_queued(row) for row in rows]

    def last_seq(self) -> int:
        """The highest sequence ever handed out (0 for a new file)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        return int(row[0]) if row else 0

    @property
    def messages(self) -> int:
        return self._messages

    @property
    def bytes(self) -> int:
        return self._bytes

    def level(self) -> Level:
        if self._bytes >= self.budget_bytes:
            return Level.FULL
        return Level.ALARM if self._bytes >= self.alarm_bytes else Level.OK

    def stats(self) -> QueueStats:
        row = self._db.execute("SELECT rx_ms FROM messages ORDER BY seq LIMIT 1").fetchone()
        oldest = row[0] if row else None
        refused = self._db.execute("SELECT COUNT(*) FROM refused").fetchone()[0]
        return QueueStats(
            messages=self._messages,
            bytes=self._bytes,
            oldest_rx_ms=int(oldest) if oldest is not None else None,
            refused=int(refused),
            budget_bytes=self.budget_bytes,
            level=self.level(),
        )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, _value: object, _tb: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _queued(row: tuple[object, ...]) -> Queued:
    seq, topic, payload, qos, retain, rx_ms, props, size = row
    content_type: str | None = None
    user: tuple[tuple[str, str], ...] = ()
    if isinstance(props, str):
        data = json.loads(props)
        content_type = data.get("ct")
        user = tuple((str(k), str(v)) for k, v in data.get("up", []))
    return Queued(
        seq=int(str(seq)),
        topic=str(topic),
        payload=bytes(payload) if isinstance(payload, (bytes, memoryview)) else b"",
        qos=int(str(qos)),
        retain=bool(retain),
        rx_ms=int(str(rx_ms)),
        content_type=content_type,
        user_properties=user,
        size=int(str(size)),
    )
