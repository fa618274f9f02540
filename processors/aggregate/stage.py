"""Stage ``aggregate``: 1-minute, hourly and daily rollups per device and metric.

Input
    ``kotaflow.readings`` (readings record v1/v2), consumer group
    ``processing.aggregate.group_id``.
Output
    InfluxDB bucket ``influxdb.rollups_bucket`` (schema in ``processors/aggregate/rollups.py``):
    ``window=1m`` aggregates (count, min, max, sum, mean, last) of 1-minute event-time
    tumbling windows, after dedup of exact duplicates; ``window=1h`` and ``window=1d``
    recomputed from them. Records that are not readings go to ``kotaflow.deadletter``.
Guarantee
    Each rollup equals a recomputation from the raw points, after crashes and rebalances:
    every write replaces a whole window (never increments), and offsets are committed only
    up to the first record of the oldest window not yet written, with the watermark in the
    commit metadata (design and proof sketch in ``processors/aggregate/windows.py``). Hourly/daily
    rollups of every hour/day a written window touched are recomputed before each commit
    (every ``rollup_interval_s``, or as soon as every window is written and the input has
    gone quiet), so a commit never covers a stale hour or day.
Late readings, however late
    There is no lateness horizon (unless ``max_lateness_h`` is set): validate accepts
    readings up to 7 days old, the store stores them, and the aggregate corrects their
    1-minute, hourly and daily windows. A reading whose window has closed opens a
    *correction* window (memory holds only the late points, not the window's others), which
    is recomputed from the raw points in ``telemetry`` and overwrites the stored rollup.
Ordering against the store stage
    Store and aggregate are separate consumer groups of the same topic, so the raw point of
    a late reading may not be written yet when the aggregate gets to it. A correction waits
    until the store group's committed offset on that partition has passed the window's last
    record (read with the Kafka admin client each flush; the store commits only after
    InfluxDB accepted the write, so committed means stored). Until then the window stays in
    memory, holding this stage's commit back, and new late readings of the same window merge
    into it. If the store group makes no progress, corrections wait (gauge
    ``kotaflow_pending_corrections``, a warning each minute) and nothing is committed past
    them: a restart re-reads them. ``wait_for_store: false`` (no store stage in this
    deployment) recomputes at once from what is stored.
Cost of corrections
    Ready corrections of one flush are planned together (``processors/aggregate/corrections.py``):
    one raw query per device and run of nearby windows, at most
    :data:`CONCURRENT_QUERIES` at a time; the hours and days they touch are recomputed for
    the changed devices only. Throughput while a day of late data arrives:
    ``python -m benchmarks.late_bench`` (quoted in ``docs/``).
    A write or query InfluxDB refuses for a reason that is not the data (token, bucket,
    outage) stalls the stage as it does store; only lines InfluxDB names are dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from kotaflow.settings import AggregateSettings, Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason
from processors.aggregate.corrections import DirtyRollups, RawQuery, plan_queries
from processors.aggregate.rollups import (
    DAY_MS,
    HOUR_MS,
    combine_flux,
    combined_aggregates,
    day_of,
    hour_of,
    points_by_series,
    raw_points_flux,
    rollup_line,
)
from processors.aggregate.windows import (
    Added,
    Series,
    Window,
    WindowBook,
    aggregate_points,
    decode_metadata,
    encode_metadata,
    window_start,
)
from processors.runtime.clients import REAL_CLIENTS, InfluxWriter, StageClients
from processors.runtime.health import Health
from processors.runtime.kafka_output import KafkaOutput
from processors.runtime.readings_input import parse_record, refused_reading
from processors.runtime.stage_loop import Batch, Offsets, instance_name

log = logging.getLogger("kotaflow.processors.aggregate")

STAGE = "aggregate"
CONCURRENT_QUERIES = 4
"""Raw-point (and rollup) queries in flight at once: corrections must not swamp InfluxDB."""
WAIT_WARNING_S = 60.0


class AggregateStage:
    name = STAGE

    def __init__(
        self,
        settings: Settings,
        health: Health,
        output: KafkaOutput,
        influx: InfluxWriter,
        clients: StageClients = REAL_CLIENTS,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._cfg: AggregateSettings = settings.processing.aggregate
        self._health = health
        self._output = output
        self._influx = influx
        self._admin: AIOKafkaAdminClient | None = None
        self.books: dict[TopicPartition, WindowBook] = {}
        self._next: dict[TopicPartition, int] = {}
        self._dirty_hours = DirtyRollups()
        self._dirty_days = DirtyRollups()
        self._waiting_since: float | None = None
        self._warned_at = 0.0
        self._last_flush = time.monotonic()
        self._last_rollup = time.monotonic()
        self._series: dict[tuple[str, str, str, str], Series] = {}
        self._committed: dict[TopicPartition, int] = {}

    @property
    def input_topic(self) -> str:
        return self._settings.kafka.topics.readings

    @property
    def consumer_settings(self) -> AggregateSettings:
        return self._cfg

    async def start(self) -> None:
        await self._output.start()
        admin = self._clients.admin(self._settings, f"kotaflow-aggregate-{instance_name()}")
        try:
            await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin
        if self._cfg.max_lateness_h is not None:
            log.warning(
                "aggregate: readings older than max_lateness_h are dead-lettered, so their "
                "rollups stay below the raw points the store keeps; unset it to correct them",
                extra={"max_lateness_h": self._cfg.max_lateness_h},
            )

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        await self._output.stop()

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Resume each partition's watermark from the metadata of its last commit."""
        assert self._admin is not None
        committed = await self._admin.list_consumer_group_offsets(
            self._cfg.group_id, partitions=sorted(partitions)
        )
        for tp in partitions:
            found = committed.get(tp)
            watermark = decode_metadata(found.metadata if found is not None else None)
            self.books[tp] = WindowBook(
                grace_ms=int(self._cfg.grace_s * 1000),
                max_lateness_ms=self._max_lateness_ms(),
                watermark_ms=watermark,
            )
            log.info(
                "partition assigned", extra={"partition": tp.partition, "watermark": watermark}
            )

    def _max_lateness_ms(self) -> int | None:
        hours = self._cfg.max_lateness_h
        return None if hours is None else int(hours * HOUR_MS)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.books.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def caught_up(self, partitions: set[TopicPartition]) -> None:
        now_ms = time.time_ns() // 1_000_000
        for tp in partitions:
            book = self.books.get(tp)
            if book is not None:
                book.caught_up(now_ms)

    async def handle(self, batch: Batch) -> None:
        now_ms = time.time_ns() // 1_000_000
        for tp, records in batch.items():
            book = self.books.get(tp)
            if book is None:  # assigned() failed; never aggregate without the watermark
                continue
            for record in records:
                found, letters = parse_record(record, STAGE)
                for letter in letters:
                    await self._output.deadletter(STAGE, letter)
                if found is None:
                    continue
                device, type_, kecamatan, ts_ms = (
                    found.device,
                    found.type,
                    found.kecamatan,
                    found.ts_ms,
                )
                for metric, value in found.values.items():
                    key = (device, metric, type_, kecamatan)
                    series = self._series.get(key)
                    if series is None:
                        series = self._series[key] = Series(*key)
                    added = book.add(series, ts_ms, value, record.offset, now_ms)
                    if added is Added.NEW:
                        continue
                    if added is Added.TOO_OLD:
                        why = f"older than {self._cfg.max_lateness_h} h: not aggregated"
                        reading = found.reading(metric)
                        letter = refused_reading(record, STAGE, Reason.TIME_TOO_OLD, why, reading)
                        await self._output.deadletter(STAGE, letter)
                    else:
                        self._health.duplicate(STAGE, added.value)
            if records:
                self._next[tp] = records[-1].offset + 1

    def due(self) -> bool:
        return time.monotonic() - self._last_flush >= self._cfg.flush_interval_s

    async def flush(self, force: bool = False) -> Offsets:
        """Write closed windows and ready corrections; every rollup interval, commit."""
        self._last_flush = time.monotonic()
        closed: list[Window] = []
        corrections: dict[TopicPartition, list[Window]] = {}
        for tp, book in self.books.items():
            for window in book.take_closed():
                if window.correction:
                    corrections.setdefault(tp, []).append(window)
                else:
                    closed.append(window)
        lines = [
            rollup_line(w.series, "1m", w.start_ms, aggregate_points(w.points)) for w in closed
        ]
        lines += await self._corrections(corrections)
        await self._write(lines)
        for window in closed:
            self._touch(window)
        pending = sum(
            1 for book in self.books.values() for w in book.windows.values() if w.correction
        )
        self._health.pending_corrections(STAGE, pending)
        waited = time.monotonic() - self._last_rollup
        if not force and waited < self._cfg.rollup_interval_s and not self._settled():
            return {}
        await self._rollups()
        await self._output.drain(STAGE)
        self._last_rollup = time.monotonic()
        offsets = {
            tp: OffsetAndMetadata(
                book.commit_offset(self._next[tp]), encode_metadata(book.watermark_ms)
            )
            for tp, book in self.books.items()
            if tp in self._next
        }
        self._committed.update((tp, om.offset) for tp, om in offsets.items())
        return offsets

    def _settled(self) -> bool:
        """Every window is written and some input is not committed yet: the input went quiet
        (the end of a backlog). Commit now, not at the next rollup interval: until then
        Kafka shows the backlog as unprocessed."""
        if any(book.windows for book in self.books.values()):
            return False
        return any(n > self._committed.get(tp, -1) for tp, n in self._next.items())

    def _touch(self, window: Window) -> None:
        self._dirty_hours.touch(hour_of(window.start_ms), window.series.device)

    async def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        began = time.perf_counter()
        refused = await self._influx.write(self._settings.influxdb.rollups_bucket, lines, STAGE)
        self._health.write_latency(STAGE, time.perf_counter() - began)
        self._health.records_out(STAGE, len(lines) - len(refused))
        for bad in refused:  # cannot happen with well-formed floats; never drop silently
            await self._output.deadletter(
                STAGE,
                DeadLetter(
                    stage=STAGE,
                    reason=Reason.BAD_TYPE,
                    message=f"InfluxDB refused a rollup: {bad.message}",
                    payload=bad.line.encode(),
                ),
            )

    async def _corrections(self, corrections: dict[TopicPartition, list[Window]]) -> list[str]:
        """Lines for the late windows whose raw points are stored; hold back the others."""
        if not corrections:
            self._waiting_since = None
            return []
        stored = await self._store_positions(set(corrections))
        ready: list[Window] = []
        for tp, windows in corrections.items():
            limit = stored.get(tp)
            waiting = [w for w in windows if limit is not None and w.last_offset >= limit]
            ready += [w for w in windows if limit is None or w.last_offset < limit]
            self.books[tp].hold_back(waiting)
            if waiting:
                self._warn_waiting(tp, limit, max(w.last_offset for w in waiting))
        if len(ready) == sum(len(ws) for ws in corrections.values()):
            self._waiting_since = None
        queries = plan_queries(ready)
        results = await _bounded(self._recompute(q) for q in queries)
        self._health.corrected(STAGE, len(ready), len(queries))
        return [line for lines in results for line in lines]

    def _warn_waiting(self, tp: TopicPartition, stored: int | None, needed: int) -> None:
        """Once a minute while corrections wait for the store group to get further."""
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < WAIT_WARNING_S or now - self._warned_at < WAIT_WARNING_S:
            return
        self._warned_at = now
        log.warning(
            "late corrections wait for the store stage (group %s) to commit past offset %d of "
            "%s[%d]; it is at %s: is the store stage running?",
            self._settings.processing.store.group_id,
            needed,
            tp.topic,
            tp.partition,
            stored,
            extra={"waiting_s": round(now - self._waiting_since)},
        )

    async def _recompute(self, query: RawQuery) -> list[str]:
        """The 1-minute rollups of ``query.windows`` from the stored raw points."""
        flux = raw_points_flux(
            self._settings.influxdb.telemetry_bucket,
            query.type,
            query.device,
            query.start_ms,
            query.stop_ms,
        )
        by_window: dict[tuple[str, str, str, int], dict[int, float]] = defaultdict(dict)
        for key, series_points in points_by_series(await self._influx.query(flux, STAGE)).items():
            for ts, value in series_points.items():
                by_window[(*key, window_start(ts))][ts] = value
        lines = []
        for w in query.windows:
            stored = by_window.get((w.series.metric, w.series.kecamatan, w.series.type, w.start_ms))
            points = {**w.points, **stored} if stored else w.points
            lines.append(rollup_line(w.series, "1m", w.start_ms, aggregate_points(points)))
            self._touch(w)
        return lines

    async def _store_positions(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """How far the store stage has written each partition (None: do not wait)."""
        if not self._cfg.wait_for_store:
            return {}
        assert self._admin is not None
        committed = await self._admin.list_consumer_group_offsets(
            self._settings.processing.store.group_id, partitions=sorted(partitions)
        )
        out = {tp: -1 for tp in partitions}
        for tp, found in committed.items():
            out[tp] = found.offset
        return out

    async def _rollups(self) -> None:
        """Recompute the hourly, then daily, rollups that written minute windows touched
        (of the devices that changed in them)."""
        bucket = self._settings.influxdb.rollups_bucket
        offset_ms = int(self._cfg.day_offset_h * HOUR_MS)
        hours = self._dirty_hours.take()
        await _bounded(self._combine(bucket, "1m", "1h", h, HOUR_MS, ds) for h, ds in hours)
        for hour, devices in hours:
            for device in devices if devices is not None else [None]:
                self._dirty_days.touch(day_of(hour, offset_ms), device)
        days = self._dirty_days.take()
        await _bounded(self._combine(bucket, "1h", "1d", d, DAY_MS, ds) for d, ds in days)

    async def _combine(
        self,
        bucket: str,
        source: str,
        target: str,
        start_ms: int,
        size_ms: int,
        devices: list[str] | None,
    ) -> None:
        rows = await self._influx.query(
            combine_flux(bucket, source, start_ms, start_ms + size_ms, devices), STAGE
        )
        aggs = combined_aggregates(rows)
        await self._write([rollup_line(s, target, start_ms, a) for s, a in aggs.items()])


T = TypeVar("T")


async def _bounded(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Await ``jobs`` with at most :data:`CONCURRENT_QUERIES` running at once, in order."""
    gate = asyncio.Semaphore(CONCURRENT_QUERIES)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))
