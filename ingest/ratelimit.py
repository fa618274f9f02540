"""Per-device token buckets: a flooding device is held to its rate, the others are untouched.

Each device key has its own bucket (``rate`` tokens per second, at most ``burst``), so one
device's flood never uses up another device's allowance. The bridge dead-letters what a
bucket refuses (reason ``rate_limited``) instead of forwarding it.

Telling a backlog from a flood (defaults, and why):

- The session backlog is never limited: what the broker queued for the bridge while it was
  away was published by devices at their own pace, the broker merely held it. The bridge
  exempts what arrives on a resumed session until it has caught up (ingest/mqtt.py).
- A device that was offline flushes its own buffer at full speed when it is back. The
  burst is sized for that: ``device_buffer_s`` (default 24 h) of the catalogue's fastest
  device type, with a quarter to spare (60 s devices: 1,800 messages), see
  :func:`default_burst`. A full bucket is what a device that was quiet that long has.
- The sustained rate (``rate_per_s``, default 5/s) is 300 times a 60 s device's rate: a
  chatty firmware is fine, a flood is not. A device flooding at 1,000/s gets its burst,
  then 5/s; the others keep their own buckets, and the bridge forwards ~10^4 messages/s,
  so the flood's refusals (dead letters are compact and cheap) do not slow anyone else.
- Bytes are bounded per message by ``max_payload_bytes`` (ingest/sizes.py), so a message
  budget is a byte budget too: at most rate x max payload per device.

Memory stays bounded: a bucket that has refilled to ``burst`` is indistinguishable from a
new one, so such buckets are forgotten whenever the table grows past ``max_devices``.
Pure logic, no I/O, no clock of its own: the caller passes ``now`` (monotonic seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

BURST_SPARE = 1.25
"""Devices report a little faster than nominal, clocks drift: a quarter to spare."""
MIN_BURST = 60


def default_burst(buffer_s: float, intervals_s: Iterable[float]) -> int:
    """A bucket that holds ``buffer_s`` of the fastest reporting interval (plus spare)."""
    fastest = min(intervals_s, default=60.0)
    return max(MIN_BURST, math.ceil(BURST_SPARE * buffer_s / fastest))


class DeviceRateLimiter:
    """Token bucket per device key; ``allow`` spends one token or says no."""

    __slots__ = ("_buckets", "_burst", "_max_devices", "_rate")

    def __init__(self, rate_per_s: float, burst: int, max_devices: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_devices = max_devices
        # device key -> [tokens, time of last update]
        self._buckets: dict[str, list[float]] = {}

    def allow(self, device: str, now: float) -> bool:
        bucket = self._buckets.get(device)
        if bucket is None:
            if len(self._buckets) >= self._max_devices:
                self._forget_full(now)
            self._buckets[device] = [self._burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:  # not min(): this runs for every message the bridge takes
            tokens = self._burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes no future answer."""
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]
