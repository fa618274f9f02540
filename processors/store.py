"""Stage ``store``: readings into the InfluxDB ``telemetry`` bucket.

Input
    ``kotaflow.readings`` (readings record v2, v1 still read: ``kotaflow.wire.readings``),
    consumer group ``processing.store.group_id``.
Output
    InfluxDB bucket ``influxdb.telemetry_bucket``. One measurement per device type; tags
    ``device``, ``kecamatan``, ``type`` (sorted); one float field per metric; timestamp =
    the device's event time in ms. Readings of one device at one instant share a line.
    Records that are not readings, and lines InfluxDB refuses as invalid (a 400 naming
    them, a 422 partial write), go to ``kotaflow.deadletter``.
Guarantee
    At least once into InfluxDB, exactly once in effect: offsets are committed only after
    the write covering them returned 2xx (and dead letters were acked); a replay after a
    crash or rebalance rewrites the same points (same series and timestamp), which
    overwrites them. While InfluxDB is down, overloaded or refuses the request itself (a
    revoked token, a deleted bucket: ``processors/runtime/write_block.py``) the stage stalls: it
    retries with backoff (honouring ``Retry-After``), commits nothing past the first
    unwritten record, says once a minute what to fix, and resumes by itself.
Latency
    A full batch (``batch_lines``) is written at once; a partial one after
    ``idle_flush_s`` when the input is caught up, else after ``flush_interval_s``. At low
    rates the fetch wait (``fetch_max_wait_ms``) is what gathers a batch. What was written
    is committed at most every ``commit_interval_s`` (and always before a revoke or stop).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiokafka.structs import OffsetAndMetadata, TopicPartition

from kotaflow.settings import Settings, StoreSettings
from kotaflow.wire.readings import ReadingsRecord
from kotaflow.wire.reasons import Reason
from processors.runtime.clients import InfluxWriter
from processors.runtime.health import Health
from processors.runtime.kafka_output import KafkaOutput
from processors.runtime.lineprotocol import (
    LineProtocolError,
    escape_key,
    series_prefix,
    telemetry_tags,
)
from processors.runtime.readings_input import RecordRef, parse_record, refused, refused_reading
from processors.runtime.stage_loop import Batch, Offsets

STAGE = "store"


@dataclass
class LineBuffer:
    """Telemetry lines being gathered: one per (series, timestamp), fields merged."""

    points: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    origins: dict[tuple[str, int], list[RecordRef]] = field(default_factory=dict)
    """The records behind each line, to dead-letter them if InfluxDB refuses it."""
    _prefixes: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _fields: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)

    def add(self, r: ReadingsRecord, origin: RecordRef) -> list[tuple[str, LineProtocolError]]:
        """Add the readings of one record (``origin``: where it came from; its values are
        finite); return the metrics that cannot be expressed as line protocol, and why."""
        series = (r.type, r.device, r.kecamatan)
        prefix = self._prefixes.get(series)
        if prefix is None:
            try:
                prefix = series_prefix(r.type, telemetry_tags(r.device, r.type, r.kecamatan))
            except LineProtocolError as err:
                return [(metric, err) for metric in r.values]
            self._prefixes[series] = prefix
        names = self._fields
        fields: dict[str, str] = {}
        refused: list[tuple[str, LineProtocolError]] = []
        for metric, value in r.values.items():
            name = names.get(metric)
            if name is None:
                try:
                    name = names[metric] = escape_key(metric)
                except LineProtocolError as err:
                    refused.append((metric, err))
                    continue
            fields[name] = repr(value)
        if not fields:
            return refused
        key = (prefix, r.ts_ms)
        merged = self.points.get(key)
        if merged is None:
            self.points[key] = fields
            self.origins[key] = [origin]
        else:
            merged.update(fields)
            self.origins[key].append(origin)
        return refused

    def take(self) -> tuple[list[str], list[list[RecordRef]]]:
        lines = [
            f"{prefix} {','.join(f'{k}={v}' for k, v in fields.items())} {ts}"
            for (prefix, ts), fields in self.points.items()
        ]
        origins = list(self.origins.values())
        self.points = {}
        self.origins = {}
        return lines, origins


class StoreStage:
    name = STAGE

    def __init__(
        self, settings: Settings, health: Health, output: KafkaOutput, influx: InfluxWriter
    ) -> None:
        self._settings = settings
        self._cfg: StoreSettings = settings.processing.store
        self._health = health
        self._output = output
        self._influx = influx
        self._prefixes: dict[tuple[str, str, str], str] = {}
        self._fields: dict[str, str] = {}
        self._buffers: dict[TopicPartition, LineBuffer] = {}
        self._inflight: dict[TopicPartition, asyncio.Task[None]] = {}
        self._covered: dict[TopicPartition, int] = {}
        self._last_flush = self._last_commit = time.monotonic()
        self._idle_lines = False

    @property
    def input_topic(self) -> str:
        return self._settings.kafka.topics.readings

    @property
    def consumer_settings(self) -> StoreSettings:
        return self._cfg

    async def start(self) -> None:
        await self._output.start()

    async def stop(self) -> None:
        await self._output.stop()

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        return None

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:  # flushed just before: nothing buffered or in flight
            self._covered.pop(tp, None)
            self._buffers.pop(tp, None)

    def caught_up(self, partitions: set[TopicPartition]) -> None:
        buffers = self._buffers
        self._idle_lines = any(tp in buffers and len(buffers[tp]) for tp in partitions)

    async def handle(self, batch: Batch) -> None:
        for tp, records in batch.items():
            buffer = self._buffers.get(tp)
            if buffer is None:
                buffer = LineBuffer(_prefixes=self._prefixes, _fields=self._fields)
                self._buffers[tp] = buffer
            for record in records:
                found, letters = parse_record(record, STAGE)
                for letter in letters:
                    await self._output.deadletter(STAGE, letter)
                if found is None:
                    continue
                for metric, err in buffer.add(found, RecordRef.of(record)):
                    why = f"cannot be written as line protocol: {err}"
                    reading = found.reading(metric)
                    letter = refused_reading(record, STAGE, Reason.BAD_SHAPE, why, reading)
                    await self._output.deadletter(STAGE, letter)
            if records:
                self._covered[tp] = records[-1].offset + 1
            if len(buffer) >= self._cfg.batch_lines:
                await self._launch(tp)

    def due(self) -> bool:
        """Every ``flush_interval_s``; sooner (``idle_flush_s``) when a partition we are
        caught up on has lines waiting: no more are coming to fill its batch, so waiting
        would only add latency. Under a backlog batches fill up (``batch_lines``) instead."""
        waited = time.monotonic() - self._last_flush
        if self._idle_lines and waited >= self._cfg.idle_flush_s:
            return True
        return waited >= self._cfg.flush_interval_s

    async def flush(self, force: bool = False) -> Offsets:
        for tp, buffer in self._buffers.items():
            if len(buffer):
                await self._launch(tp)
        inflight, self._inflight = list(self._inflight.values()), {}
        await asyncio.gather(*inflight)
        await self._output.drain(STAGE)
        self._last_flush = now = time.monotonic()
        if not force and now - self._last_commit < self._cfg.commit_interval_s:
            return {}  # written; committed with a later flush (a commit is a request too)
        self._last_commit = now
        offsets = {tp: OffsetAndMetadata(o, "") for tp, o in self._covered.items()}
        self._covered.clear()
        return offsets

    async def _launch(self, tp: TopicPartition) -> None:
        """Start writing ``tp``'s buffer: one write per partition in flight, in order (the
        same series is always on the same partition, so last-write-wins follows Kafka's
        order), writes of different partitions in parallel."""
        previous = self._inflight.pop(tp, None)
        if previous is not None:
            await previous
        lines, origins = self._buffers[tp].take()
        self._inflight[tp] = asyncio.create_task(self._write(lines, origins))

    async def _write(self, lines: list[str], origins: list[list[RecordRef]]) -> None:
        bucket = self._settings.influxdb.telemetry_bucket
        size = self._cfg.batch_lines
        for start in range(0, len(lines), size):
            chunk = lines[start : start + size]
            began = time.perf_counter()
            bad_lines = await self._influx.write(bucket, chunk, STAGE)
            self._health.write_latency(STAGE, time.perf_counter() - began)
            self._health.records_out(STAGE, len(chunk) - len(bad_lines))
            if bad_lines:
                where = {line: i for i, line in enumerate(chunk)}
                for bad in bad_lines:
                    for record in origins[start + where[bad.line]]:
                        why = f"InfluxDB refused the point: {bad.message}"
                        letter = refused(record, STAGE, Reason.BAD_TYPE, why)
                        await self._output.deadletter(STAGE, letter)
