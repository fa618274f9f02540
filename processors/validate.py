"""Stage ``validate``: raw device messages into validated, calibrated, enriched readings.

Input
    ``kotaflow.raw`` (raw envelope v1: device bytes + ``kf.*`` headers), consumer group
    ``processing.validation.group_id``.
Output
    ``kotaflow.readings`` (readings record v2, keyed by device id, so one device stays on
    one partition and in order): each reading decoded by the ``devices/formats`` decoder of
    the envelope's format, checked against catalogue and registry, converted to the
    canonical unit, calibrated (``raw * scale + offset``) and given the device's type and
    kecamatan; the readings of a message that share device, time and flags go out as one
    record. Everything refused goes to ``kotaflow.deadletter`` with reason, message,
    the original bytes and where they came from (MQTT topic, Kafka topic/partition/offset):
    a broken envelope, an unknown topic, every rejection a decoder reports.
Guarantee
    At least once into ``kotaflow.readings`` and ``kotaflow.deadletter``: an idempotent
    producer (``acks=all``), and the input offsets are committed only after every record
    produced for them was acknowledged. A crash replays from the last commit, which can
    repeat readings; store overwrites them and aggregate dedups them, so the effect is
    exactly once. A poison message becomes a dead letter, never a stop.

Registry and catalogue: edits are picked up without a restart (``devices.watch``): the
files are looked at every few seconds (or at once on SIGHUP) at a flush, validated in full,
and switched only if valid; a bad edit keeps the files in force and logs why.

Latency: after a poll that did not fill ``max_records`` (the input is caught up) its
readings are sent at once (the producer lingers ``linger_ms``), not at the next flush;
under a backlog batches fill up first. ``flush_interval_s`` paces acks and commits.

Hot path: records are appended to per-partition producer batches (``create_batch`` /
``send_batch``, partition = Kafka's murmur2 of the device key, looked up once per device;
both from ``kotaflow.kafka_batching``, which the bridge uses too), and built from a
per-device head, the time and flags, and the values dumped by orjson; both avoid
per-record coroutines. Envelopes and topic matches are remembered per topic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from devices.calibration import calibrate
from devices.decoding import DecodeContext
from devices.fleet import Fleet, load_fleet
from devices.formats import decode
from devices.reading import Reading, Rejection
from devices.registry import Calibration
from devices.topics import TopicMatch, match_topic
from devices.watch import FleetWatcher
from kotaflow.kafka_batching import CachedPartitioner, append_or_roll
from kotaflow.settings import Settings, ValidateSettings
from kotaflow.wire.raw import EnvelopeError, EnvelopeReader, RawEnvelope
from kotaflow.wire.readings import flags_part, record_head
from kotaflow.wire.reasons import Reason
from processors.runtime.health import Health
from processors.runtime.kafka_output import KafkaOutput
from processors.runtime.readings_input import refused
from processors.runtime.stage_loop import Batch, Offsets

STAGE = "validate"
TOPIC_CACHE_SIZE = 100_000
"""Distinct MQTT topics whose match is remembered (one per device and format)."""


@dataclass(frozen=True, slots=True)
class DeviceOut:
    """What turns readings of one device into readings-record bytes."""

    head: bytes
    """``{"v":2,"device":..,"type":..,"kecamatan":..,"units":{..},"ts_ms":``"""
    key: bytes
    """The Kafka key: the device id."""
    calibrations: dict[str, Calibration | None]
    """Each metric of the device's type, with its calibration if it has one."""
    partition: int
    """The ``kotaflow.readings`` partition of ``key``, looked up once per device."""


class ReadingEncoder:
    """Readings record v2 bytes, equal to ``kotaflow.wire.readings.readings_record``.

    A record is ``head + ts_ms + flags part + values + "}"``: ``head`` is made once per
    device (:meth:`device`), the flags part once per set of flags."""

    def __init__(self, fleet: Fleet, partition_of: Callable[[bytes], int] = lambda _: 0) -> None:
        self._fleet = fleet
        self._partition_of = partition_of
        self._devices: dict[str, DeviceOut | None] = {}
        self._flags: dict[tuple[str, ...], bytes] = {}

    def device(self, device_id: str) -> DeviceOut | None:
        """The outputs of a registered device (None if unknown)."""
        found = self._devices.get(device_id, False)
        if found is False:
            found = self._devices[device_id] = self._build(device_id)
        return found  # type: ignore[return-value]

    def _build(self, device_id: str) -> DeviceOut | None:
        device = self._fleet.device(device_id)
        if device is None:
            return None
        metrics = self._fleet.metrics_of(device)
        units = {name: spec.unit for name, spec in metrics.items()}
        head = record_head(device.id, device.type, device.kecamatan, units)
        calibrations = {name: device.calibration.get(name) for name in metrics}
        key = device.id.encode()
        return DeviceOut(head, key, calibrations, self._partition_of(key))

    def encode(
        self, out: DeviceOut, ts_ms: int, flags: tuple[str, ...], values: dict[str, float]
    ) -> bytes:
        """The record of one device's readings at ``ts_ms`` (values already calibrated)."""
        part = self._flags.get(flags)
        if part is None:
            part = self._flags[flags] = flags_part(flags)
        return out.head + str(ts_ms).encode() + part + orjson.dumps(values) + b"}"


_UNKNOWN: Calibration | None = Calibration()
"""``DeviceOut.calibrations.get(metric, _UNKNOWN)``: the metric is not the device's."""


def judge_message(
    env: RawEnvelope, ctx: DecodeContext, encoder: ReadingEncoder
) -> tuple[list[Reading], list[Rejection]]:
    """What this stage would make of ``env`` now: the readings it would send on and what it
    would refuse (decoder, registry and calibration checks), without sending anything.
    ``deadletter replay --dry-run`` asks it; the hot path (:meth:`ValidateStage._emit`)
    makes the same checks inline."""
    match = match_topic(env.mqtt_topic)
    if match is None or match.format is not env.format:
        why = "matches no device topic" if match is None else f"is not {env.format.value}"
        message = f"MQTT topic {env.mqtt_topic!r} {why}"
        return [], [Rejection(Reason.UNKNOWN_TOPIC, message, env.device_key)]
    result = decode(env.payload, match, env.taken_ms(), ctx)
    good: list[Reading] = []
    refused = list(result.rejections)
    for reading in result.readings:
        device = encoder.device(reading.device_id)
        calibration = (
            device.calibrations.get(reading.metric, _UNKNOWN) if device is not None else _UNKNOWN
        )
        if calibration is _UNKNOWN:
            message = "device or metric is not in the registry"
            refused.append(
                Rejection(Reason.UNKNOWN_DEVICE, message, reading.device_id, reading.metric)
            )
        elif calibration is not None and not math.isfinite(calibrate(reading.value, calibration)):
            message = f"calibration made {reading.metric} non-finite"
            refused.append(Rejection(Reason.NOT_FINITE, message, reading.device_id, reading.metric))
        else:
            good.append(reading)
    return good, refused


class ValidateStage:
    name = STAGE

    def __init__(
        self,
        settings: Settings,
        health: Health,
        output: KafkaOutput,
        fleet: Fleet | None = None,
    ) -> None:
        self._settings = settings
        self._cfg: ValidateSettings = settings.processing.validation
        self._health = health
        self._output = output
        self._partitioner = CachedPartitioner()
        self._partitions: list[int] = []
        self._watch = FleetWatcher(settings, fleet or load_fleet(settings))
        self._use(self._watch.fleet)
        self._covered: dict[TopicPartition, int] = {}
        self._new_batch: Callable[[], Any] = lambda: None
        self._batches: dict[int, Any] = {}
        self._full: list[tuple[int, Any]] = []
        """Batches that filled up, in order, to send before their partition's open one."""
        self._produced = 0
        self._last_flush = time.monotonic()
        self._topics: dict[str, TopicMatch | None] = {}
        self._envelopes = EnvelopeReader(TOPIC_CACHE_SIZE)

    def _use(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._ctx = DecodeContext(fleet)
        self._encoder = ReadingEncoder(fleet, self._partition_of)

    def request_reload(self) -> None:
        """Re-read the registry and catalogue at the next flush (SIGHUP)."""
        self._watch.request()

    @property
    def fleet(self) -> Fleet:
        """The registry and catalogue in force."""
        return self._fleet

    @property
    def input_topic(self) -> str:
        return self._settings.kafka.topics.raw

    @property
    def consumer_settings(self) -> ValidateSettings:
        return self._cfg

    async def start(self) -> None:
        await self._output.start()
        producer = self._output.producer
        topic = self._settings.kafka.topics.readings
        partitions = await producer.partitions_for(topic)
        self._partitions = sorted(partitions or [0])
        self._new_batch = producer.create_batch

    async def stop(self) -> None:
        await self._output.stop()

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        return None

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._covered.pop(tp, None)

    def caught_up(self, partitions: set[TopicPartition]) -> None:
        return None

    def due(self) -> bool:
        return time.monotonic() - self._last_flush >= self._cfg.flush_interval_s

    async def handle(self, batch: Batch) -> None:
        polled = 0
        one = self._one
        for tp, records in batch.items():
            for record in records:
                rejected = one(record)  # no coroutine per record: most need no await
                if rejected:
                    for env, rejection in rejected:
                        await self._reject(record, env, rejection)
                if self._full:
                    await self._send_full()
            if records:
                self._covered[tp] = records[-1].offset + 1
                polled += len(records)
        if polled < self._cfg.max_records:
            # A short poll: the input is (nearly) caught up and nothing is coming to fill
            # the batches, so hand them to the producer now (it lingers ``linger_ms``)
            # instead of at the next flush. Under a backlog every poll is full and batches
            # fill up (sent when full, or at the flush).
            for partition in list(self._batches):
                await self._send(partition)

    async def flush(self, force: bool = False) -> Offsets:
        await self._send_full()
        for partition in list(self._batches):
            await self._send(partition)
        await self._output.drain(STAGE)
        self._health.records_out(STAGE, self._produced)
        self._produced = 0
        self._last_flush = time.monotonic()
        refused = self._watch.refusals
        reloaded = self._watch.poll()  # between batches: a record is judged by one fleet
        if reloaded is not None:
            self._use(reloaded)
            self._health.fleet_reload(STAGE, accepted=True)
        elif self._watch.refusals != refused:
            self._health.fleet_reload(STAGE, accepted=False)
        offsets = {tp: OffsetAndMetadata(o, "") for tp, o in self._covered.items()}
        self._covered.clear()
        return offsets

    def _one(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> list[tuple[RawEnvelope | None, Rejection]] | None:
        """Decode one raw record into the producer batches; what it refuses, for
        :meth:`_reject` (None when nothing was)."""
        try:
            env = self._envelopes.read(record.value, record.headers)
        except EnvelopeError as err:
            return [(None, Rejection(Reason.BAD_ENVELOPE, str(err)))]
        match = self._match(env.mqtt_topic)
        if match is None or match.format is not env.format:
            why = "matches no device topic" if match is None else f"is not {env.format.value}"
            return [
                (
                    env,
                    Rejection(
                        Reason.UNKNOWN_TOPIC, f"MQTT topic {env.mqtt_topic!r} {why}", env.device_key
                    ),
                )
            ]
        result = decode(env.payload, match, env.taken_ms(), self._ctx)
        rejections = result.rejections
        if result.readings:
            late = self._emit(result.readings, env.rx_ms)
            if late:
                rejections = rejections + late
        return [(env, rejection) for rejection in rejections] if rejections else None

    def _partition_of(self, key: bytes) -> int:
        """Kafka's default partition of ``key`` in ``kotaflow.readings`` (known after start)."""
        return self._partitioner(key, self._partitions, self._partitions)

    def _match(self, topic: str) -> TopicMatch | None:
        """``match_topic``, remembered per topic (bounded: forgotten all at once when full)."""
        found = self._topics.get(topic, False)
        if found is False:
            if len(self._topics) >= TOPIC_CACHE_SIZE:
                self._topics.clear()
            found = self._topics[topic] = match_topic(topic)
        return found  # type: ignore[return-value]

    def _emit(self, readings: list[Reading], rx_ms: int) -> list[Rejection]:
        """Append readings to their partitions' producer batches, one record per run of
        readings with the same device, time and flags (a metric that comes again starts a
        new record, so none is lost); return the ones refused here. Their Kafka time is
        the bridge's receive time. The hot path: no awaits, one lookup per run."""
        refused: list[Rejection] = []
        device: DeviceOut | None = None
        values: dict[str, float] = {}
        last_device, last_ts = "", -1
        last_flags: tuple[str, ...] = ()
        for device_id, metric, value, ts_ms, flags in readings:
            if (
                ts_ms != last_ts
                or device_id != last_device
                or flags != last_flags
                or metric in values
            ):
                if values and device is not None:
                    self._append(device, last_ts, last_flags, values, rx_ms)
                    values = {}
                if device_id != last_device:
                    last_device, device = device_id, self._encoder.device(device_id)
                last_ts, last_flags = ts_ms, flags
            calibration = (
                device.calibrations.get(metric, _UNKNOWN) if device is not None else _UNKNOWN
            )
            if calibration is _UNKNOWN:
                refused.append(
                    Rejection(
                        Reason.UNKNOWN_DEVICE,
                        "device or metric is not in the registry",
                        device_id,
                        metric,
                    )
                )
                continue
            if calibration is not None:
                value = calibrate(value, calibration)
                if not math.isfinite(value):
                    refused.append(
                        Rejection(
                            Reason.NOT_FINITE,
                            f"calibration made {metric} non-finite",
                            device_id,
                            metric,
                        )
                    )
                    continue
            values[metric] = value
        if values and device is not None:
            self._append(device, last_ts, last_flags, values, rx_ms)
        self._produced += len(readings) - len(refused)
        return refused

    def _append(
        self,
        device: DeviceOut,
        ts_ms: int,
        flags: tuple[str, ...],
        values: dict[str, float],
        rx_ms: int,
    ) -> None:
        data = self._encoder.encode(device, ts_ms, flags, values)
        partition = device.partition
        builder = self._batches.get(partition)
        if builder is None:
            builder = self._batches[partition] = self._new_batch()
        fresh = append_or_roll(builder, self._new_batch, device.key, data, rx_ms)
        if fresh is not None:
            self._full.append((partition, builder))
            self._batches[partition] = fresh

    async def _send_full(self) -> None:
        """Send the batches that filled up (their partitions' open batches come later)."""
        full, self._full = self._full, []
        for partition, builder in full:
            await self._submit(partition, builder)

    async def _send(self, partition: int) -> None:
        builder = self._batches.pop(partition, None)
        if builder is not None:
            await self._submit(partition, builder)

    async def _submit(self, partition: int, builder: Any) -> None:
        if builder.record_count() == 0:
            return
        future = await self._output.producer.send_batch(
            builder, self._settings.kafka.topics.readings, partition=partition
        )
        self._output.track(STAGE, future)

    async def _reject(
        self, record: ConsumerRecord[bytes, bytes], env: RawEnvelope | None, rejection: Rejection
    ) -> None:
        letter = refused(
            record,
            STAGE,
            rejection.reason,
            rejection.message,
            device=rejection.device_id or (env.device_key if env else None),
            metric=rejection.metric,
            payload=env.payload if env is not None else None,
            mqtt_topic=env.mqtt_topic if env is not None else None,
            rx_ms=env.taken_ms() if env is not None else None,
        )
        await self._output.deadletter(STAGE, letter)
