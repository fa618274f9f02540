"""The two non-human destinations of alert events: ``kotaflow.alerts`` and InfluxDB.

Both are fed from the outbox like any receiver (:mod:`processors.alerting.dispatch`), so an
event reaches them at least once even if Kafka or InfluxDB is down when it happens.

* :class:`KafkaAlerts` produces the event (JSON v1, key = device) with the idempotent
  producer of :mod:`processors.kafka`, in batches, awaiting every delivery.
* :class:`InfluxAlerts` writes measurement ``alerts`` (tags device, kecamatan, rule,
  severity, status, type; fields change, level, title, text, id, silenced, value,
  threshold; time = the event's ``at_ms``) through :class:`processors.influx.InfluxSink`,
  which retries until InfluxDB takes it. The same event written twice overwrites itself.
  Grafana shows the points as annotations (``text`` is the Indonesian message).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kotaflow.settings import Settings
from processors.alerting.channels import DeliveryError
from processors.alerting.events import AlertEvent
from processors.alerting.store import INFLUX_DESTINATION, KAFKA_DESTINATION, OutboxItem
from processors.influx import InfluxConfigError, InfluxSink
from processors.kafka import make_producer
from processors.lineprotocol import escape_key, format_float, line, series_prefix

log = logging.getLogger("kotaflow.alerting.sinks")

Annotate = Callable[[AlertEvent], tuple[str, str]]
"""Event -> (annotation title, annotation text)."""


class KafkaAlerts:
    name = KAFKA_DESTINATION
    batch_size = 500

    def __init__(self, settings: Settings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def deliver(self, items: Sequence[OutboxItem]) -> None:
        topic = self._settings.kafka.topics.alerts
        try:
            producer = await self._started()
            futures = []
            for item in items:
                event = AlertEvent.from_json(item.payload)
                futures.append(await producer.send(topic, event.value_bytes(), key=event.key()))
            await asyncio.gather(*futures)
        except KafkaError as err:
            raise DeliveryError(f"kafka: {err!r}") from err

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self._settings.kafka, self._client_id, linger_ms=0)
            await producer.start()
            self._producer = producer
        return self._producer


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
        for refused in await sink.write(bucket, lines):
            log.error("InfluxDB refused an alert line", extra={"line": refused.line[:300]})

    async def close(self) -> None:
        if self._sink is not None:
            await self._sink.__aexit__(None, None, None)
            self._sink = None

    async def _opened(self) -> InfluxSink:
        if self._sink is None:
            try:
                self._sink = await InfluxSink(self._settings).__aenter__()
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
