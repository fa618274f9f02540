"""The edge's Prometheus metrics, in a registry of its own (no process-wide state).

``kotaflow_edge_queue_messages``        messages in the queue file, not yet confirmed centrally
``kotaflow_edge_queue_bytes``           their bytes, as the budget counts them
``kotaflow_edge_queue_budget_bytes``    the byte budget
``kotaflow_edge_queue_level``           0 ok, 1 alarm (past ``edge.alarm_fraction``), 2 full
``kotaflow_edge_oldest_age_seconds``    age of the oldest queued message (edge receive time)
``kotaflow_edge_link_up``               1 while connected to the central broker
``kotaflow_edge_received_total``        messages taken from the local broker (stored, acked)
``kotaflow_edge_forwarded_total``       central PUBACKs, by ``kind`` (live, backlog);
                                        ``rate()`` of it is the forward rate
``kotaflow_edge_refused_total``         messages the central broker refused (kept aside)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.queue import Level, QueueStats

LEVELS = {Level.OK: 0, Level.ALARM: 1, Level.FULL: 2}


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_messages = Gauge("kotaflow_edge_queue_messages", "queued", registry=r)
        self.queue_bytes = Gauge("kotaflow_edge_queue_bytes", "queued bytes", registry=r)
        self.budget_bytes = Gauge("kotaflow_edge_queue_budget_bytes", "byte budget", registry=r)
        self.level = Gauge("kotaflow_edge_queue_level", "0 ok, 1 alarm, 2 full", registry=r)
        self.oldest_age = Gauge(
            "kotaflow_edge_oldest_age_seconds", "age of the oldest queued message", registry=r
        )
        self.link_up = Gauge("kotaflow_edge_link_up", "1 while the central link is up", registry=r)
        self.received = Counter("kotaflow_edge_received", "taken from the local broker", registry=r)
        self.forwarded = Counter(
            "kotaflow_edge_forwarded", "confirmed by the central broker", ["kind"], registry=r
        )
        self.forwarded_live = self.forwarded.labels(kind="live")
        self.forwarded_backlog = self.forwarded.labels(kind="backlog")
        self.refused = Counter("kotaflow_edge_refused", "refused by the central broker", registry=r)

    def received_total(self) -> float:
        return self.registry.get_sample_value("kotaflow_edge_received_total") or 0.0

    def forwarded_total(self) -> float:
        value = self.registry.get_sample_value
        return sum(
            value("kotaflow_edge_forwarded_total", {"kind": kind}) or 0.0
            for kind in ("live", "backlog")
        )

    def show(self, stats: QueueStats) -> None:
        self.queue_messages.set(stats.messages)
        self.queue_bytes.set(stats.bytes)
        self.budget_bytes.set(stats.budget_bytes)
        self.level.set(LEVELS[stats.level])
        self.oldest_age.set(stats.oldest_age_s())
