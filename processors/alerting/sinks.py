"""The two non-human destinations of alert events: ``kotaflow.alerts`` and InfluxDB.

Both are fed from the outbox like any receiver (:mod:`processors.alerting.dispatch`), so an
event reaches them at least once even if Kafka or InfluxDB is down when it happens.

* :func:`alerts_sink` produces the event (JSON v1, key = device) with the idempotent
  producer of :mod:`processors.runtime.kafka_clients`, in batches, awaiting every delivery;
  :func:`deadletter_sink` does the same for records the stage could not read.
* :class:`InfluxAlerts` writes measurement ``alerts`` (tags device, kecamatan, rule,
  severity, status, type; fields change, level, title, text, id, silenced, value,
  threshold; time = the event's ``at_ms``) through :class:`processors.runtime.influx.InfluxSink`,
  which retries until InfluxDB takes it. The same event written twice overwrites itself.
  Grafana shows the points as annotations (``text`` is the Indonesian message).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kotaflow.settings import Settings
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels import DeliveryError
from processors.alerting.state_store import (
    DEADLETTER_DESTINATION,
    INFLUX_DESTINATION,
    KAFKA_DESTINATION,
    OutboxItem,
)
from processors.runtime.influx import ALERT_ROLE, InfluxConfigError, InfluxSink
from processors.runtime.kafka_clients import make_producer
from processors.runtime.lineprotocol import escape_key, format_float, line, series_prefix

log = logging.getLogger("kotaflow.alerting.sinks")

Annotate = Callable[[AlertEvent], tuple[str, str]]
"""Event -> (annotation title, annotation text)."""


class KafkaSink:
    """Produce outbox payloads to one topic; ``encode`` turns a payload into (key, value)."""

    batch_size = 500

    def __init__(
        self,
        name: str,
        settings: Settings,
        topic: str,
        encode: Callable[[dict[str, Any]], tuple[bytes | None, bytes]],
        client_id: str,
    ) -> None:
        self.name = name
        self._settings = settings
        self._topic = topic
        self._encode = encode
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def deliver(self, items: Sequence[OutboxItem]) -> None:
        try:
            producer = await self._started()
            futures = []
            for item in items:
                key, value = self._encode(item.payload)
                futures.append(await producer.send(self._topic, value, key=key))
            await asyncio.gather(*futures)
        except KafkaError as err:
            raise DeliveryError(f"kafka {self._topic}: {err!r}") from err

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self._settings, self._client_id, linger_ms=0)
            await producer.start()
            self._producer = producer
        return self._producer


def alerts_sink(settings: Settings, client_id: str) -> KafkaSink:
    """``kotaflow.alerts``: the event record v1, keyed by device."""

    def encode(payload: dict[str, Any]) -> tuple[bytes | None, bytes]:
        event = AlertEvent.from_json(payload)
        return event.key(), event.value_bytes()

    return KafkaSink(
        KAFKA_DESTINATION, settings, settings.kafka.topics.alerts, encode, f"{client_id}-alerts"
    )


def deadletter_sink(settings: Settings, client_id: str) -> KafkaSink:
    """``kotaflow.deadletter``: records this stage could not read (payload = key + value)."""

    def encode(payload: dict[str, Any]) -> tuple[bytes | None, bytes]:
        key = payload.get("key")
        return (key.encode() if isinstance(key, str) else None), str(payload["value"]).encode()

    topic = settings.kafka.topics.deadletter
    return KafkaSink(DEADLETTER_DESTINATION, settings, topic, encode, f"{client_id}-dead")


class InfluxAlerts:
    name = INFLUX_DESTINATION
    batch_size = 500

    def __init__(self, settings: Settings, annotate: Annotate) -> None:
        self._settings = settings
        self._annotate = annotate
        self._sink: InfluxSink | None = None

    async def deliver(self, items: Sequence[OutboxItem]) -> None:
        cfg = self._settings.alerting
        bucket = cfg.influx_bucket or self._settings.influxdb.telemetry_bucket
        lines = [
            alert_line(cfg.influx_measurement, event, *self._annotate(event))
            for event in (AlertEvent.from_json(item.payload) for item in items)
        ]
        sink = await self._opened()
        for refused in await sink.write(bucket, lines, "alert"):
            log.error("InfluxDB refused an alert line", extra={"line": refused.line[:300]})

    async def close(self) -> None:
        if self._sink is not None:
            await self._sink.__aexit__(None, None, None)
            self._sink = None

    async def _opened(self) -> InfluxSink:
        if self._sink is None:
            try:
                self._sink = await InfluxSink(self._settings, role=ALERT_ROLE).__aenter__()
            except InfluxConfigError as err:
                raise DeliveryError(f"influxdb: {err}") from err
        return self._sink


def alert_line(measurement: str, event: AlertEvent, title: str, text: str) -> str:
    tags = {
        "device": event.device,
        "kecamatan": event.kecamatan,
        "rule": event.rule,
        "severity": event.severity.value,
        "status": event.status,
        "type": event.type,
    }
    fields = [
        ("change", _string(event.change.value)),
        ("id", _string(event.id)),
        ("level", _string(event.level)),
        ("silenced", "true" if event.silenced_by else "false"),
        ("text", _string(text)),
        ("title", _string(title)),
    ]
    if event.value is not None:
        fields.append(("value", format_float(event.value)))
    if event.threshold is not None:
        fields.append(("threshold", format_float(event.threshold)))
    return line(
        series_prefix(measurement, tags), [(escape_key(k), v) for k, v in fields], event.at_ms
    )


def _string(value: str) -> str:
    """A line-protocol string field: quotes and backslashes escaped, no line breaks."""
    flat = " | ".join(part for part in value.splitlines() if part)
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'
