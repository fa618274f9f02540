"""Sliding windows over one device's readings of one metric (pure, event time).

A :class:`Series` keeps the samples of the last ``keep_ms`` (the longest window any rule
over that metric needs), sorted by timestamp. A sample whose timestamp is already present is
ignored, so a reading replayed after a restart never counts twice. Aggregates are computed
over the window ``(newest - window_ms, newest]``; with the rain gauge's per-interval ``rain``
metric, ``sum`` over 1 h is the hourly rainfall.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from processors.alerting.model import Signal, SignalKind


@dataclass(slots=True)
class Series:
    keep_ms: int
    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, ts_ms: int, value: float) -> bool:
        """Insert a sample; False if one with this timestamp is already held (a replay)."""
        at = bisect.bisect_left(self.ts, ts_ms)
        if at < len(self.ts) and self.ts[at] == ts_ms:
            return False
        self.ts.insert(at, ts_ms)
        self.values.insert(at, value)
        self._prune()
        return True

    @property
    def newest_ts(self) -> int | None:
        return self.ts[-1] if self.ts else None

    @property
    def newest_value(self) -> float | None:
        return self.values[-1] if self.values else None

    def evaluate(self, signal: Signal) -> float | None:
        """The signal at the newest sample, or None with no samples."""
        if not self.ts:
            return None
        if signal.kind is SignalKind.VALUE:
            return self.values[-1]
        start = bisect.bisect_right(self.ts, self.ts[-1] - signal.window_ms)
        window = self.values[start:]
        if signal.kind is SignalKind.SUM:
            return sum(window)
        if signal.kind is SignalKind.AVG:
            return sum(window) / len(window)
        if signal.kind is SignalKind.MIN:
            return min(window)
        if signal.kind is SignalKind.MAX:
            return max(window)
        if signal.kind is SignalKind.RISE:
            return window[-1] - min(window)
        return max(window) - window[-1]  # FALL

    def _prune(self) -> None:
        cut = min(bisect.bisect_right(self.ts, self.ts[-1] - self.keep_ms), len(self.ts) - 1)
        if cut > 0:
            del self.ts[:cut]
            del self.values[:cut]

    def to_json(self) -> dict[str, Any]:
        return {"keep_ms": self.keep_ms, "ts": self.ts, "values": self.values}

    @classmethod
    def from_json(cls, data: dict[str, Any], keep_ms: int) -> Series:
        series = cls(keep_ms, list(data["ts"]), [float(v) for v in data["values"]])
        if series.ts:
            series._prune()
        return series
