"""One log line per interval for the bridge's refusals, not one per message.

A flooding device can be refused thousands of times a second; a line for each would flood
the log as well. Every refusal is still counted exactly in the metrics
(``kotaflow_bridge_deadlettered_total{reason}``); the log says, every ``interval_s`` in
which anything was refused, how many per reason and which devices had the most.
Pure bookkeeping; the caller passes the clock.
"""

from __future__ import annotations

import logging
from collections import Counter

from kotaflow.logs import ONE_LINE_EACH
from kotaflow.wire.reasons import Reason

INTERVAL_S = 10.0
TOP_DEVICES = 5


class RefusalLog:
    __slots__ = ("_by_device", "_by_reason", "_interval_s", "_log", "_next_at")

    def __init__(self, logger: logging.Logger, interval_s: float = INTERVAL_S) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._by_reason: Counter[str] = Counter()
        self._by_device: Counter[str] = Counter()
        self._next_at: float | None = None

    def note(self, reason: Reason, device: bytes | None) -> None:
        """One dead letter, now in Kafka."""
        self._by_reason[reason.value] += 1
        self._by_device[device.decode(errors="replace") if device else "(unknown)"] += 1

    def flush_if_due(self, now: float) -> bool:
        """Log the interval's summary when it is over (the first refusal logs at once)."""
        if not self._by_reason or (self._next_at is not None and now < self._next_at):
            return False
        self._log.warning(
            "dead-lettered at the edge",
            extra={
                "by_reason": dict(self._by_reason),
                "top_devices": dict(self._by_device.most_common(TOP_DEVICES)),
                "devices": len(self._by_device),
                "interval_s": self._interval_s,
            }
            | ONE_LINE_EACH,  # paced here already: never held back as a repeat
        )
        self._by_reason.clear()
        self._by_device.clear()
        self._next_at = now + self._interval_s
        return True
