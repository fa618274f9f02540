"""When and how long to wait before retrying a request (pure policy, no I/O).

* :func:`retryable`: whether an HTTP answer may pass by itself: no answer at all
  (connection refused, timeout), 408, 429 and every 5xx (the alert channels' and the
  one-shot tools' rule).
  InfluxDB writes go further (``processors/runtime/write_block.py``): only answers that name
  refused lines are final; a 401/403/404 is retried too, since an operator can fix it.
* Delay: exponential from ``initial_s`` by ``multiplier`` up to ``max_s``, with +/- ``jitter``
  so that many processes do not retry in step; a server's ``Retry-After`` (seconds or an
  HTTP date) wins when longer, capped at ``max_retry_after_s``.

Retries never give up on their own: a stage that cannot write keeps its offsets uncommitted
and waits, which is what keeps data from being lost while InfluxDB is down or refuses us.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

from kotaflow.settings import RetrySettings


def retryable(status: int | None) -> bool:
    """Whether a request that ended with ``status`` (None: no response) may succeed later."""
    return status is None or status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, when.timestamp() - now_s)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_retry_after_s: float = 300.0

    @classmethod
    def from_settings(cls, s: RetrySettings) -> Backoff:
        return cls(s.initial_s, s.max_s, s.multiplier, s.jitter, s.max_retry_after_s)

    def delay(self, attempt: int, retry_after_s: float | None = None, rand: float = 0.5) -> float:
        """Seconds before retry number ``attempt`` (1 = first retry).

        ``rand`` in [0, 1) picks the jitter (0.5 = none), so tests can pin it.
        """
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempt - 1))
        base *= 1.0 + self.jitter * (2.0 * rand - 1.0)
        if retry_after_s is not None:
            base = max(base, min(retry_after_s, self.max_retry_after_s))
        return base
