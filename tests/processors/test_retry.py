"""Retry/backoff policy for InfluxDB requests (pure, no services)."""

from __future__ import annotations

import pytest

from processors.runtime.retry import Backoff, parse_retry_after, retryable


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, True),
        (429, True),
        (500, True),
        (503, True),
        (408, True),
        (400, False),
        (401, False),
        (404, False),
        (413, False),
    ],
)
def test_only_overload_server_errors_and_silence_are_retried(
    status: int | None, expected: bool
) -> None:
    assert retryable(status) is expected


def test_retry_after_in_seconds_and_as_http_date() -> None:
    assert parse_retry_after("7", now_s=0) == 7.0
    assert parse_retry_after(" 2.5 ", now_s=0) == 2.5
    # Sun, 06 Nov 1994 08:49:37 GMT = 784111777
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now_s=784111770) == 7.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now_s=784111800) == 0.0


@pytest.mark.parametrize("junk", [None, "", "soon", "-3x"])
def test_unreadable_retry_after_is_ignored(junk: str | None) -> None:
    assert parse_retry_after(junk, now_s=0) is None


def test_backoff_doubles_up_to_the_cap() -> None:
    b = Backoff(initial_s=0.5, max_s=4.0, multiplier=2.0, jitter=0.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_stays_within_its_fraction() -> None:
    b = Backoff(initial_s=1.0, max_s=10.0, jitter=0.2)
    assert b.delay(1, rand=0.0) == pytest.approx(0.8)
    assert b.delay(1, rand=0.999999) == pytest.approx(1.2, rel=1e-5)
    assert b.delay(1, rand=0.5) == pytest.approx(1.0)


def test_a_longer_retry_after_wins_and_is_capped() -> None:
    b = Backoff(initial_s=0.2, max_s=30.0, jitter=0.0, max_retry_after_s=60.0)
    assert b.delay(1, retry_after_s=5.0) == 5.0
    assert b.delay(1, retry_after_s=0.01) == 0.2  # our own backoff is longer
    assert b.delay(1, retry_after_s=3600.0) == 60.0
