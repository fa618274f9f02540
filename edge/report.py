"""The edge's readings about itself: a device of the catalogue's ``gateway`` type.

Every ``edge.report_every_s`` (60 s, the type's interval) the edge builds one native-JSON
reading (``{"ts": ..., "values": {...}}`` on ``kotaflow/<edge.device_id>/telemetry``) and
puts it in its own queue file like a device message. So it takes the normal pipeline
centrally (bridge -> validate -> store -> InfluxDB; the no-data rule and Grafana see it),
and the queue's rules decide when it travels:

* **link up**: the report is the newest row, so it is *live* and takes a free in-flight
  slot at once, however long the backlog behind it (live first, edge/gateway.py);
* **link down**: it waits in the file with the devices' messages and arrives, with its own
  time, as part of the backlog: the history of the outage (how the queue grew) reaches
  Grafana afterwards. About 300 bytes a minute (~0.4 MB a day) of the budget.

The edge's central account may publish on its gateway's topics because the gateway is a
registry device of the edge's kecamatan (devices/credentials.py). Pure logic: the
gateway feeds it clock readings and counters; nothing here does I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from devices.topics import device_topic
from edge.queue import Incoming, QueueStats
from kotaflow.wire.raw import PayloadFormat


@dataclass(frozen=True, slots=True)
class Counters:
    """Totals since the edge started (they only grow)."""

    received: float
    forwarded: float
    link_drops: int


@dataclass
class GatewayReporter:
    """Accumulates one report period and turns it into a reading when it is due."""

    device_id: str
    every_s: float
    started_s: float
    """Monotonic time the current period began."""
    start: Counters
    up_s: float = 0.0
    _last_s: float | None = None

    def observe(self, now_s: float, link_up: bool) -> None:
        """Count the time since the previous call as link up or down."""
        if self._last_s is not None and link_up:
            self.up_s += max(0.0, now_s - self._last_s)
        self._last_s = now_s

    def due(self, now_s: float) -> bool:
        return now_s - self.started_s >= self.every_s

    def values(
        self, now_s: float, now_ms: int, stats: QueueStats, counters: Counters
    ) -> dict[str, float]:
        """The gateway metrics for the period that ends now (catalogue names and units)."""
        period = max(now_s - self.started_s, 1e-9)
        return {
            "queue_messages": stats.messages,
            "queue_bytes": stats.bytes,
            "oldest_age": round(stats.oldest_age_s(now_ms), 1),
            "budget_used": round(100.0 * stats.bytes / stats.budget_bytes, 3),
            "link_uptime": round(min(100.0, 100.0 * self.up_s / period), 1),
            "link_drops": counters.link_drops - self.start.link_drops,
            "forward_rate": round((counters.forwarded - self.start.forwarded) / period, 3),
            "receive_rate": round((counters.received - self.start.received) / period, 3),
            "refused": stats.refused,
        }

    def report(self, now_s: float, now_ms: int, stats: QueueStats, counters: Counters) -> Incoming:
        """The reading for the period that ends now, as a queue message; starts the next."""
        payload = {"ts": now_ms, "values": self.values(now_s, now_ms, stats, counters)}
        self.started_s, self.start, self.up_s = now_s, counters, 0.0
        return Incoming(
            topic=device_topic(PayloadFormat.NATIVE_JSON, self.device_id),
            payload=json.dumps(payload, separators=(",", ":")).encode(),
            qos=1,
            retain=False,
            rx_ms=now_ms,
        )
