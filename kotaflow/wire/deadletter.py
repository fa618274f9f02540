"""The dead-letter record on ``kotaflow.deadletter``, written by every stage the same way.

Value (JSON, version 1)::

    {"v": 1, "stage": "bridge" | "validate" | ..., "reason": "<kotaflow.wire.reasons.Reason>",
     "message": "human explanation", "device": "<key or null>", "metric": null | "...",
     "at_ms": <when dead-lettered>, "source": {"mqtt_topic": ..., "kafka_topic": ...,
     "partition": ..., "offset": ...}, "payload_b64": "<original bytes>"}

Key: the device key when known, so one device's rejects stay together. The original bytes
are kept whole so a fixed decoder can replay them, unless they are too large for a Kafka
record: :meth:`DeadLetter.compact` then keeps a prefix and says so in ``source``
(``payload_truncated``, ``payload_bytes``: the full length, ``payload_sha256``), so the
dead letter always fits and the original can still be identified.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from kotaflow.wire.reasons import Reason

DEADLETTER_VERSION = 1
COMPACT_PREFIX_BYTES = 1_024
"""Bytes of the payload (and of the MQTT topic) a compact dead letter keeps."""


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

    def compact(self, prefix_bytes: int = COMPACT_PREFIX_BYTES) -> DeadLetter:
        """This dead letter with only the payload's first ``prefix_bytes``, its full length
        and SHA-256 (and a long MQTT topic cut likewise): a few KiB whatever came in."""
        source = dict(self.source)
        topic = source.get("mqtt_topic")
        if isinstance(topic, str) and len(topic) > prefix_bytes:
            source["mqtt_topic"] = topic[:prefix_bytes]
            source["mqtt_topic_truncated"] = True
        source.update(
            payload_truncated=len(self.payload) > prefix_bytes,
            payload_bytes=len(self.payload),
            payload_sha256=hashlib.sha256(self.payload).hexdigest(),
        )
        return DeadLetter(
            stage=self.stage,
            reason=self.reason,
            message=self.message[:prefix_bytes],
            payload=self.payload[:prefix_bytes],
            device=self.device,
            metric=self.metric,
            source=source,
            at_ms=self.at_ms,
        )

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
