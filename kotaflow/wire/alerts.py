"""The alert event: what the engine says happened, and its two wire forms.

On ``kotaflow.alerts`` (JSON, version 1, key = device id)::

    {"v": 1, "id": "river_level/rtg-rl-01/3", "rule": "river_level", "device": "rtg-rl-01",
     "type": "river_level", "kecamatan": "Reok", "metric": "water_level", "unit": "cm",
     "change": "fired" | "escalated" | "deescalated" | "resolved",
     "status": "firing" | "resolved", "level": "Siaga", "previous_level": "Waspada",
     "severity": "major", "value": 262.0, "threshold": 250.0, "at_ms": 1764300000000,
     "started_ms": 1764299000000, "labels": {...}, "silenced_by": null}

In InfluxDB: measurement ``alerts`` (settings), tags ``device, kecamatan, rule, severity,
status, type``, fields ``change, level, text, value, threshold, id``, timestamp ``at_ms``;
Grafana shows these as annotations. Reminders (``change = "reminder"``) and escalations
(``"unacknowledged"``) are notifications only: they are neither published nor written.

``id`` is unique per rule and device (a per-alert sequence number that is persisted with the
state), so the outbox recognises a replayed event and never sends it twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

EVENT_VERSION = 1


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"


class Change(StrEnum):
    FIRED = "fired"
    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    RESOLVED = "resolved"
    REMINDER = "reminder"
    UNACKED = "unacknowledged"
    """An escalation: the alert has fired this long and nobody acknowledged it."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    id: str
    rule: str
    device: str
    type: str
    kecamatan: str
    metric: str | None
    unit: str
    change: Change
    level: str
    previous_level: str | None
    severity: Severity
    value: float | None
    threshold: float | None
    at_ms: int
    started_ms: int
    title: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    receivers: tuple[str, ...] = ()
    silenced_by: str | None = None
    notify: bool = False
    nodata: bool = False
    last_seen_ms: int | None = None

    @property
    def status(self) -> str:
        return "resolved" if self.change is Change.RESOLVED else "firing"

    @property
    def published(self) -> bool:
        """Whether this event goes to ``kotaflow.alerts`` and InfluxDB (reminders do not)."""
        return self.change not in (Change.REMINDER, Change.UNACKED)

    @property
    def alert_id(self) -> str:
        """What ``kotaflow alerts ack`` takes: ``<rule>/<device>``."""
        return f"{self.rule}/{self.device}"

    def to_json(self) -> dict[str, Any]:
        return {
            "v": EVENT_VERSION,
            "id": self.id,
            "rule": self.rule,
            "device": self.device,
            "type": self.type,
            "kecamatan": self.kecamatan,
            "metric": self.metric,
            "unit": self.unit,
            "change": self.change.value,
            "status": self.status,
            "level": self.level,
            "previous_level": self.previous_level,
            "severity": self.severity.value,
            "value": self.value,
            "threshold": self.threshold,
            "at_ms": self.at_ms,
            "started_ms": self.started_ms,
            "title": dict(self.title),
            "labels": dict(self.labels),
            "receivers": list(self.receivers),
            "silenced_by": self.silenced_by,
            "notify": self.notify,
            "nodata": self.nodata,
            "last_seen_ms": self.last_seen_ms,
        }

    def value_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()

    def key(self) -> bytes:
        return self.device.encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertEvent:
        if data.get("v") != EVENT_VERSION:
            raise ValueError(f"alert event version {data.get('v')!r} is not supported")
        return cls(
            id=data["id"],
            rule=data["rule"],
            device=data["device"],
            type=data["type"],
            kecamatan=data["kecamatan"],
            metric=data["metric"],
            unit=data["unit"],
            change=Change(data["change"]),
            level=data["level"],
            previous_level=data["previous_level"],
            severity=Severity(data["severity"]),
            value=data["value"],
            threshold=data["threshold"],
            at_ms=data["at_ms"],
            started_ms=data["started_ms"],
            title=data.get("title") or {},
            labels=data.get("labels") or {},
            receivers=tuple(data.get("receivers") or ()),
            silenced_by=data.get("silenced_by"),
            notify=bool(data.get("notify")),
            nodata=bool(data.get("nodata")),
            last_seen_ms=data.get("last_seen_ms"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> AlertEvent:
        return cls.from_json(json.loads(raw))
