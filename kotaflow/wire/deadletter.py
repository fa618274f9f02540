"""The dead-letter record on ``kotaflow.deadletter``, written by every stage the same way.

Value (JSON, version 1)::

    {"v": 1, "stage": "bridge" | "validate" | ..., "reason": "<kotaflow.wire.reasons.Reason>",
     "message": "human explanation", "device": "<key or null>", "metric": null | "...",
     "at_ms": <when dead-lettered>, "source": {"mqtt_topic": ..., "kafka_topic": ...,
     "partition": ..., "offset": ...}, "payload_b64": "<original bytes>"}

Key: the device key when known, so one device's rejects stay together. The original bytes
are kept whole so a fixed decoder can replay them.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from kotaflow.wire.reasons import Reason

DEADLETTER_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str
    reason: Reason
    message: str
    payload: bytes
    device: str | None = None
    metric: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def key(self) -> bytes | None:
        return self.device.encode() if self.device else None

    def value(self) -> bytes:
        return json.dumps(
            {
                "v": DEADLETTER_VERSION,
                "stage": self.stage,
                "reason": self.reason.value,
                "message": self.message,
                "device": self.device,
                "metric": self.metric,
                "at_ms": self.at_ms,
                "source": self.source,
                "payload_b64": base64.b64encode(self.payload).decode(),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_value(cls, raw: bytes) -> DeadLetter:
        data = json.loads(raw)
        return cls(
            stage=data["stage"],
            reason=Reason(data["reason"]),
            message=data["message"],
            payload=base64.b64decode(data["payload_b64"]),
            device=data.get("device"),
            metric=data.get("metric"),
            source=data.get("source") or {},
            at_ms=data["at_ms"],
        )
