"""Per-device token buckets: a flood is limited, other devices are not, memory is bounded."""

from __future__ import annotations

from ingest.ratelimit import DeviceRateLimiter


def test_burst_then_sustained_rate() -> None:
    limiter = DeviceRateLimiter(rate_per_s=2.0, burst=5)
    allowed = sum(limiter.allow("flood", 0.0) for _ in range(20))
    assert allowed == 5
    assert limiter.allow("flood", 0.4) is False  # 0.8 token refilled
    assert limiter.allow("flood", 0.5) is True  # 1.0 token
    assert sum(limiter.allow("flood", 10.0) for _ in range(20)) == 5  # capped at burst


def test_flooding_device_does_not_starve_others() -> None:
    limiter = DeviceRateLimiter(rate_per_s=1.0, burst=3)
    for _ in range(1000):
        limiter.allow("flood", 0.0)
    assert all(limiter.allow(f"quiet-{i}", 0.0) for i in range(100))


def test_refilled_buckets_are_forgotten_when_the_table_is_full() -> None:
    limiter = DeviceRateLimiter(rate_per_s=1.0, burst=2, max_devices=10)
    for i in range(10):
        limiter.allow(f"d{i}", 0.0)
    limiter.allow("busy", 100.0)  # all ten have refilled by now: dropped
    assert len(limiter) == 1
