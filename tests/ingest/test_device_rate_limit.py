"""Per-device token buckets: a flood is limited, other devices are not, memory is bounded."""

from __future__ import annotations

from devices.catalogue import load_catalogue
from ingest.ratelimit import DeviceRateLimiter, default_burst


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


def test_default_burst_holds_a_day_of_the_fastest_device_type() -> None:
    assert default_burst(86_400, [900, 60, 300]) == 1_800  # 1,440 plus a quarter
    assert default_burst(60, [60]) == 60  # never below the old floor
    catalogue = load_catalogue()
    burst = default_burst(86_400, (t.interval_s for t in catalogue.types.values()))
    assert burst >= 1_440


def test_a_device_flushing_its_24h_buffer_at_once_is_not_limited() -> None:
    limiter = DeviceRateLimiter(rate_per_s=5.0, burst=default_burst(86_400, [60]))
    assert all(limiter.allow("back-online", 0.0) for _ in range(1_440))
    # a flood at 1,000/s for 10 s gets its burst and then the sustained rate
    allowed = sum(limiter.allow("flood", i / 1000) for i in range(10_000))
    assert 1_800 <= allowed <= 1_800 + 5 * 10 + 1
