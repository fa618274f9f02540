"""Stage ``aggregate``: 1-minute, hourly and daily rollups per device and metric.

Input
    ``kotaflow.readings`` (readings record v1), consumer group
    ``processing.aggregate.group_id``.
Output
    InfluxDB bucket ``influxdb.rollups_bucket`` (schema in ``processors/aggregate/rollups.py``):
    ``window=1m`` aggregates (count, min, max, sum, mean, last) of 1-minute event-time
    tumbling windows, after dedup of exact duplicates; ``window=1h`` and ``window=1d``
    recomputed from them. Readings older than ``max_lateness_h`` and records that are not
    readings go to ``kotaflow.deadletter``.
Guarantee
    Each rollup equals a recomputation from the raw points, after crashes and rebalances:
    every write replaces a whole window (never increments), and offsets are committed only
    up to the first record of the oldest window not yet written, with the watermark in the
    commit metadata (design and proof sketch in ``processors/aggregate/windows.py``). Late readings
    (window already closed) trigger a recomputation of their window from the raw points in
    ``telemetry``, once the store group has committed past them (so the points are there);
    until then they hold the commit back. Hourly/daily rollups of every hour/day a written
    window touched are recomputed before each commit (every ``rollup_interval_s``).
    A write or query InfluxDB refuses for a reason that is not the data (token, bucket,
    outage) stalls the stage as it does store; only lines InfluxDB names are dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from kotaflow.settings import AggregateSettings, Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason
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
)
from processors.runtime.health import Health
from processors.runtime.influx import InfluxSink
from processors.runtime.kafka_clients import make_admin
from processors.runtime.kafka_output import KafkaOutput
from processors.runtime.readings_input import parse_readings, refused_reading
from processors.runtime.stage_loop import Batch, Offsets, instance_name

log = logging.getLogger("kotaflow.processors.aggregate")

STAGE = "aggregate"


class AggregateStage:
    name = STAGE

    def __init__(
        self, settings: Settings, health: Health, output: KafkaOutput, influx: InfluxSink
    ) -> None:
        self._settings = settings
        self._cfg: AggregateSettings = settings.processing.aggregate
        self._health = health
        self._output = output
        self._influx = influx
        self._admin: AIOKafkaAdminClient | None = None
        self.books: dict[TopicPartition, WindowBook] = {}
        self._next: dict[TopicPartition, int] = {}
        self._dirty_hours: set[int] = set()
        self._dirty_days: set[int] = set()
        self._last_flush = time.monotonic()
        self._last_rollup = time.monotonic()
        self._series: dict[tuple[str, str, str, str], Series] = {}

    @property
    def input_topic(self) -> str:
        return self._settings.kafka.topics.readings

    @property
    def consumer_settings(self) -> AggregateSettings:
        return self._cfg

    async def start(self) -> None:
        await self._output.start()
        admin = make_admin(self._settings, f"kotaflow-aggregate-{instance_name()}")
        try:
            await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin

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
                max_lateness_ms=int(self._cfg.max_lateness_h * 3_600_000),
                watermark_ms=watermark,
            )
            log.info(
                "partition assigned", extra={"partition": tp.partition, "watermark": watermark}
            )

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.books.pop(tp, None)
            self._next.pop(tp, None)

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
                readings, letters = parse_readings(record, STAGE)
                for letter in letters:
                    await self._output.deadletter(STAGE, letter)
                for parsed in readings:
                    key = (parsed.device, parsed.metric, parsed.type, parsed.kecamatan)
                    series = self._series.get(key)
                    if series is None:
                        series = self._series[key] = Series(*key)
                    added = book.add(series, parsed.ts_ms, parsed.value, record.offset, now_ms)
                    if added is Added.NEW:
                        continue
                    if added is Added.TOO_OLD:
                        why = f"older than {self._cfg.max_lateness_h} h: not aggregated"
                        letter = refused_reading(record, STAGE, Reason.TIME_TOO_OLD, why, parsed)
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
            self._touch(window.start_ms)
        pending = sum(
            1 for book in self.books.values() for w in book.windows.values() if w.correction
        )
        self._health.pending_corrections(STAGE, pending)
        if not force and time.monotonic() - self._last_rollup < self._cfg.rollup_interval_s:
            return {}
        await self._rollups()
        await self._output.drain(STAGE)
        self._last_rollup = time.monotonic()
        return {
            tp: OffsetAndMetadata(
                book.commit_offset(self._next[tp]), encode_metadata(book.watermark_ms)
            )
            for tp, book in self.books.items()
            if tp in self._next
        }

    def _touch(self, start_ms: int) -> None:
        self._dirty_hours.add(hour_of(start_ms))

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
            return []
        stored = await self._store_positions(set(corrections))
        ready: list[Window] = []
        for tp, windows in corrections.items():
            limit = stored.get(tp)
            book = self.books[tp]
            waiting = [w for w in windows if limit is not None and w.last_offset >= limit]
            ready += [w for w in windows if limit is None or w.last_offset < limit]
            book.hold_back(waiting)
        by_device: dict[tuple[str, str], list[Window]] = defaultdict(list)
        for w in ready:
            by_device[(w.series.type, w.series.device)].append(w)
        results = await asyncio.gather(*(self._recompute(ws) for ws in by_device.values()))
        return [line for lines in results for line in lines]

    async def _recompute(self, windows: list[Window]) -> list[str]:
        first = windows[0].series
        start = min(w.start_ms for w in windows)
        stop = max(w.start_ms for w in windows) + 60_000
        flux = raw_points_flux(
            self._settings.influxdb.telemetry_bucket, first.type, first.device, start, stop
        )
        stored = points_by_series(await self._influx.query(flux, STAGE))
        lines = []
        for w in windows:
            series_points = stored.get((w.series.metric, w.series.kecamatan, w.series.type), {})
            in_window = {
                ts: v for ts, v in series_points.items() if w.start_ms <= ts < w.start_ms + 60_000
            }
            points = {**w.points, **in_window}
            lines.append(rollup_line(w.series, "1m", w.start_ms, aggregate_points(points)))
            self._touch(w.start_ms)
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
        """Recompute the hourly, then daily, rollups that written minute windows touched."""
        bucket = self._settings.influxdb.rollups_bucket
        offset_ms = int(self._cfg.day_offset_h * HOUR_MS)
        hours, self._dirty_hours = sorted(self._dirty_hours), set()
        for hour in hours:
            rows = await self._influx.query(combine_flux(bucket, "1m", hour, hour + HOUR_MS), STAGE)
            aggs = combined_aggregates(rows)
            await self._write([rollup_line(s, "1h", hour, a) for s, a in aggs.items()])
            self._dirty_days.add(day_of(hour, offset_ms))
        days, self._dirty_days = sorted(self._dirty_days), set()
        for day in days:
            rows = await self._influx.query(combine_flux(bucket, "1h", day, day + DAY_MS), STAGE)
            aggs = combined_aggregates(rows)
            await self._write([rollup_line(s, "1d", day, a) for s, a in aggs.items()])
