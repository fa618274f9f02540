"""The manifest: one JSON line per message sent, so a test can trace every value end to end.

Line schema (``kotaflow simulate --manifest FILE``)::

    {"run": "5c1e0f2a", "seq": 17, "device": "rtg-wx-01", "format": "senml-json",
     "topic": "kotaflow/rtg-wx-01/senml", "kind": "out_of_range", "variant": null,
     "dup_of": null, "bytes": 231, "payload_b2b": "9f0c...", "due_s": 0.0085,
     "values": [{"metric": "temperature", "ts": 1795830194891, "expect": "ok",
                 "raw": 21.43, "value": 21.13}, ...]}

``expect`` is ``ok`` (store ``value``: canonical unit, calibrated), ``duplicate`` (a
repeat of message ``dup_of``: stored once) or the rejection reason code the decoder must
give (``raw``/``value`` then null). ``payload_b2b`` is a BLAKE2b-64 of the payload bytes
(dead letters keep the bytes, so a rejected message can be matched even if unparsable).
Each message also carries the MQTT 5 user property ``kf-sim`` = ``<run>/<seq>`` unless
tracing is off; the bridge keeps it as the Kafka header ``kf.up.kf-sim``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from devices.simulator.stream import SimMessage


def payload_hash(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


class ManifestWriter:
    """Appends manifest lines to a file (buffered; closed by the runner)."""

    def __init__(self, path: Path, run_id: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8", buffering=1 << 16)
        self._run_id = run_id

    def write(self, message: SimMessage) -> None:
        line = {
            "run": self._run_id,
            "seq": message.seq,
            "device": message.device_id,
            "format": message.format.value,
            "topic": message.topic,
            "kind": message.kind.value,
            "variant": message.variant.value if message.variant else None,
            "dup_of": message.dup_of,
            "bytes": len(message.payload),
            "payload_b2b": payload_hash(message.payload),
            "due_s": round(message.due_s, 6),
            "values": [
                {
                    "metric": v.metric,
                    "ts": v.ts_ms,
                    "expect": v.outcome,
                    "raw": v.raw,
                    "value": v.value,
                }
                for v in message.values
            ],
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class ManifestValue:
    """One value of a manifest, flattened with its message's fields."""

    run: str
    seq: int
    device: str
    topic: str
    kind: str
    metric: str
    ts_ms: int
    expect: str
    raw: float | None
    value: float | None


def read_manifest(path: Path) -> Iterator[dict[str, Any]]:
    """The manifest's message lines, as written."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def manifest_values(path: Path) -> Iterator[ManifestValue]:
    """Every value of every message, flattened (what end-to-end comparisons want)."""
    for m in read_manifest(path):
        for v in m["values"]:
            yield ManifestValue(
                m["run"], m["seq"], m["device"], m["topic"], m["kind"],
                v["metric"], v["ts"], v["expect"], v["raw"], v["value"],
            )  # fmt: skip
