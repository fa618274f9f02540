"""Prometheus figures of the alert stage (served with the stage loop's on a metrics port).

``kotaflow_alert_events_total{change}``: alert events the engine produced;
``kotaflow_alert_notifications_total{receiver, outcome}``: deliveries per destination with
outcome ``sent``, ``retry`` (a failure that will be retried) or ``failed`` (refused for good);
``kotaflow_alert_outbox_pending{destination}`` and
``kotaflow_alert_outbox_oldest_pending_seconds{destination}``: the durable outbox's depth and
how long its oldest undelivered message has waited (a receiver that is down shows here first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from kotaflow.wire.alerts import AlertEvent


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._events = Counter(
            "kotaflow_alert_events", "Alert events produced", ["change"], registry=r
        )
        self._notified = Counter(
            "kotaflow_alert_notifications",
            "Outbox deliveries by destination and outcome",
            ["receiver", "outcome"],
            registry=r,
        )
        self._depth = Gauge(
            "kotaflow_alert_outbox_pending", "Undelivered messages", ["destination"], registry=r
        )
        self._oldest = Gauge(
            "kotaflow_alert_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered message",
            ["destination"],
            registry=r,
        )
        self._seen: set[str] = set()

    def events(self, events: Iterable[AlertEvent]) -> None:
        for event in events:
            self._events.labels(event.change.value).inc()

    def notified(self, receiver: str, outcome: str, n: int) -> None:
        self._notified.labels(receiver, outcome).inc(n)

    def outbox(self, pending: Mapping[str, tuple[int, int]], now_ms: int) -> None:
        """Set depth and oldest age from :meth:`AlertStore.pending` (0 for emptied queues)."""
        for destination in self._seen | set(pending):
            count, oldest_ms = pending.get(destination, (0, now_ms))
            self._depth.labels(destination).set(count)
            self._oldest.labels(destination).set(max(0.0, (now_ms - oldest_ms) / 1000))
        self._seen |= set(pending)

    def value(self, name: str, labels: Mapping[str, str]) -> float:
        found = self.registry.get_sample_value(name, dict(labels))
        return 0.0 if found is None else found
