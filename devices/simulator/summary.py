"""What a simulation run sent, counted so that tests can compare end to end.

The JSON form (``kotaflow simulate --json``, :meth:`Summary.to_json`), schema
``kotaflow.simulate.summary/1``::

    {
      "schema": "kotaflow.simulate.summary/1",
      "run_id": "5c1e0f2a", "seed": 1, "format": "mixed", "faults": "malformed=0.01,...",
      "started_at": "2026-11-28T01:50:00.000Z", "time_scale": 1.0,
      "rate_requested": 2000.0,          # readings/s
      "devices": 38, "silent_devices": ["..."], "excluded_devices": [],
      "behind_edge": ["nrg-rl-01", "..."],   # published to the edge's broker (--behind-edge)
      "messages": 1234,                  # MQTT messages published (QoS 1)
      "readings": 6000,                  # values they carry, faulty and repeated ones too
      "valid": 5700,                     # values the pipeline must store: accepted, first copy
      "bytes": 345678,                   # payload bytes
      "kinds": {"normal": {"messages": 1100, "readings": 5500}, "malformed": {...},
                "out_of_range": {...}, "duplicate": {...}, "late": {...}, "skew": {...}},
      "rejected": {"out_of_range": 12, ...},          # values the decoders must refuse
      "rejected_messages": {"out_of_range": 12, ...}, # messages with such a value
      "acked": 1234, "refused": 0, "unacked": 0,      # PUBACKs: success, failure, missing
      "duration_s": 3.01,                # start to the last PUBACK
      "achieved_rate": 1993.4,           # readings / duration_s
      "message_rate": 410.0,
      "manifest": "/tmp/run.jsonl"
    }

``readings`` = ``valid`` + the ``duplicate`` kind's readings + the sum of ``rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.simulator.faults import Kind
from devices.simulator.stream import DUPLICATE, SimMessage

SCHEMA = "kotaflow.simulate.summary/1"


@dataclass(slots=True)
class KindCount:
    messages: int = 0
    readings: int = 0


def _per_kind() -> dict[str, KindCount]:
    return {k.value: KindCount() for k in Kind}


@dataclass(slots=True)
class Summary:
    run_id: str
    seed: int
    format: str
    faults: str
    started_at: str
    time_scale: float
    rate_requested: float
    devices: int = 0
    silent_devices: list[str] = field(default_factory=list)
    excluded_devices: list[str] = field(default_factory=list)
    behind_edge: list[str] = field(default_factory=list)
    """Devices that published to an edge's local broker (``--behind-edge``)."""
    messages: int = 0
    readings: int = 0
    valid: int = 0
    bytes: int = 0
    kinds: dict[str, KindCount] = field(
        default_factory=lambda: {k.value: KindCount() for k in Kind}
    )
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_messages: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    refused: int = 0
    unacked: int = 0
    duration_s: float = 0.0
    manifest: str | None = None

    def count(self, message: SimMessage) -> None:
        """Count a message that was just published."""
        n = len(message.values)
        self.messages += 1
        self.readings += n
        self.bytes += len(message.payload)
        kind = self.kinds[message.kind.value]
        kind.messages += 1
        kind.readings += n
        for expected in message.values:
            if expected.outcome == "ok":
                self.valid += 1
            elif expected.outcome != DUPLICATE:
                self.rejected[expected.outcome] = self.rejected.get(expected.outcome, 0) + 1
        for reason in message.reasons:
            self.rejected_messages[reason] = self.rejected_messages.get(reason, 0) + 1

    @property
    def achieved_rate(self) -> float:
        return self.readings / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def message_rate(self) -> float:
        return self.messages / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "seed": self.seed,
            "format": self.format,
            "faults": self.faults,
            "started_at": self.started_at,
            "time_scale": self.time_scale,
            "rate_requested": round(self.rate_requested, 3),
            "devices": self.devices,
            "silent_devices": self.silent_devices,
            "excluded_devices": self.excluded_devices,
            "behind_edge": self.behind_edge,
            "messages": self.messages,
            "readings": self.readings,
            "valid": self.valid,
            "bytes": self.bytes,
            "kinds": {
                k: {"messages": c.messages, "readings": c.readings} for k, c in self.kinds.items()
            },
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_messages": dict(sorted(self.rejected_messages.items())),
            "acked": self.acked,
            "refused": self.refused,
            "unacked": self.unacked,
            "duration_s": round(self.duration_s, 3),
            "achieved_rate": round(self.achieved_rate, 1),
            "message_rate": round(self.message_rate, 1),
            "manifest": self.manifest,
        }
