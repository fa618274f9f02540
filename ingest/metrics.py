"""The bridge's Prometheus metrics, in a registry of its own (no process-wide state).

``kotaflow_bridge_received_total``       messages handed over by the MQTT client
``kotaflow_bridge_produced_total``       records Kafka acknowledged on the raw topic
``kotaflow_bridge_deadlettered_total``   records Kafka acknowledged on the dead-letter topic,
                                         by ``reason``
``kotaflow_bridge_acked_total``          MQTT acknowledgements sent (QoS >= 1)
``kotaflow_bridge_redelivered_total``    messages the broker marked as redelivered (dup)
``kotaflow_bridge_dropped_unacked_total`` deliveries abandoned unacked (reconnect or
                                         recovery); the broker redelivers them
``kotaflow_bridge_in_flight``            received and not yet acked
``kotaflow_bridge_ack_latency_seconds``  receive -> ack of the oldest message of each ack
                                         burst (one Kafka batch acks many), histogram
``kotaflow_bridge_kafka_failures_total`` produce failures that triggered a recovery
``kotaflow_bridge_mqtt_connects_total``  MQTT (re)connections
``kotaflow_bridge_lease_held``           1 while this bridge is the active one (ingest/lease.py)
``kotaflow_bridge_backlog_exempt_total`` session-backlog messages exempt from the rate limit
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kotaflow.wire.reasons import Reason

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("kotaflow_bridge_received", "MQTT messages received", registry=r)
        self.produced = Counter(
            "kotaflow_bridge_produced", "records acknowledged by Kafka on the raw topic", registry=r
        )
        self.deadlettered = Counter(
            "kotaflow_bridge_deadlettered",
            "records acknowledged by Kafka on the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.acked = Counter("kotaflow_bridge_acked", "MQTT acks sent", registry=r)
        self.redelivered = Counter(
            "kotaflow_bridge_redelivered", "messages received with the dup flag", registry=r
        )
        self.dropped_unacked = Counter(
            "kotaflow_bridge_dropped_unacked",
            "deliveries abandoned unacked for the broker to redeliver",
            registry=r,
        )
        self.in_flight = Gauge("kotaflow_bridge_in_flight", "received, not yet acked", registry=r)
        self.ack_latency = Histogram(
            "kotaflow_bridge_ack_latency_seconds",
            "MQTT receive to MQTT ack, oldest message of each ack burst",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.kafka_failures = Counter(
            "kotaflow_bridge_kafka_failures", "produce failures that caused a recovery", registry=r
        )
        self.mqtt_connects = Counter(
            "kotaflow_bridge_mqtt_connects", "MQTT connections established", registry=r
        )
        self.lease_held = Gauge(
            "kotaflow_bridge_lease_held", "1 while this bridge is the active one", registry=r
        )
        self.backlog_exempt = Counter(
            "kotaflow_bridge_backlog_exempt",
            "session-backlog messages exempt from the per-device rate limit",
            registry=r,
        )
        # Pre-create one child per reason so dashboards see zeros, not gaps.
        self._deadlettered_by_reason = {
            reason: self.deadlettered.labels(reason=reason.value) for reason in Reason
        }

    def deadlettered_for(self, reason: Reason) -> Counter:
        return self._deadlettered_by_reason[reason]

    def track_in_flight(self, count: Callable[[], int]) -> None:
        self.in_flight.set_function(lambda: float(count()))

    def serve(self, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
        """Serve ``/metrics`` on ``host:port``; returns a function that stops the server."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
