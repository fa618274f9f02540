"""A per-client token bucket: a client may burst, then is held to a steady rate (429).

Bounded memory: when more than ``max_clients`` are tracked, the full (idle) buckets are
forgotten first. Pure and clock-injected, so it is tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RateLimit:
    rate_per_s: float = 5.0
    burst: float = 30.0
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    """client -> (tokens, at)."""

    def allow(self, client: str, now: float) -> float:
        """0 when ``client`` may go on, else the seconds until it may."""
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            self._forget_idle(now)
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate_per_s
        idle = [c for c, (_, at) in self._buckets.items() if now - at >= full_after]
        for client in idle or list(self._buckets)[: self.max_clients // 2]:
            del self._buckets[client]
