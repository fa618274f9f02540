"""What the bridge does with one MQTT message: forward it to the raw topic, or dead-letter it.

Decided here, at the edge, before anything reaches Kafka's raw topic:

- a payload larger than ``max_payload_bytes`` -> ``oversize``;
- a topic that matches no device pattern (``devices.topics.match_topic``) -> ``unknown_topic``;
- a device over its token bucket (:mod:`ingest.ratelimit`) -> ``rate_limited``;
- anything else -> a :class:`~ingest.envelope.RawEnvelope` with the payload untouched.

Dead letters keep the whole payload and the MQTT topic so they can be replayed. Pure logic,
no I/O: the caller passes the clock readings. Topic lookups (and the record headers that
depend only on the topic) are memoised in a bounded table because a fleet reuses a few
thousand topics millions of times; unknown topics are not memoised, so junk cannot fill it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devices.reading import Reason
from devices.topics import TopicMatch, match_topic
from ingest.envelope import Headers, RawEnvelope, topic_headers
from ingest.ratelimit import DeviceRateLimiter
from kotaflow.deadletter import DeadLetter

STAGE = "bridge"


@dataclass(slots=True)
class Inbound:
    """The parts of an MQTT message the bridge looks at (decoupled from paho's class)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


class EdgePolicy:
    """Classifies inbound messages; one instance per bridge (it holds the rate buckets)."""

    __slots__ = ("_limiter", "_max_payload", "_topic_cache", "_topic_cache_size")

    def __init__(
        self,
        max_payload_bytes: int,
        limiter: DeviceRateLimiter | None,
        topic_cache_size: int = 50_000,
    ) -> None:
        self._max_payload = max_payload_bytes
        self._limiter = limiter
        self._topic_cache: dict[str, tuple[TopicMatch, Headers]] = {}
        self._topic_cache_size = topic_cache_size

    def classify(self, msg: Inbound, rx_ms: int, now: float) -> RawEnvelope | DeadLetter:
        """``rx_ms``: wall clock (ms since epoch) for the record; ``now``: monotonic seconds."""
        match = self._match(msg.topic)
        device = match.device_key if match is not None else None
        size = len(msg.payload)
        if size > self._max_payload:
            return self._dead(
                msg, Reason.OVERSIZE, f"payload {size} bytes > limit {self._max_payload}", device
            )
        if match is None:
            return self._dead(msg, Reason.UNKNOWN_TOPIC, "topic matches no device pattern", None)
        if self._limiter is not None and not self._limiter.allow(match.device_key, now):
            return self._dead(
                msg, Reason.RATE_LIMITED, "device over its per-device rate limit", device
            )
        return RawEnvelope(
            payload=msg.payload,
            mqtt_topic=msg.topic,
            device_key=match.device_key,
            key_kind=match.key_kind,
            format=match.format,
            rx_ms=rx_ms,
            qos=msg.qos,
            retain=msg.retain,
            content_type=msg.content_type,
            user_properties=msg.user_properties,
        )

    def record_headers(self, envelope: RawEnvelope) -> Headers:
        """``envelope.headers()``, with the per-topic part taken from the topic table."""
        cached = self._topic_cache.get(envelope.mqtt_topic)
        return envelope.headers(cached[1] if cached is not None else None)

    def _match(self, topic: str) -> TopicMatch | None:
        cache = self._topic_cache
        found = cache.get(topic)
        if found is not None:
            return found[0]
        if len(cache) >= self._topic_cache_size:
            cache.clear()  # cheaper than LRU bookkeeping; refills from the live topics
        match = match_topic(topic)
        if match is not None:
            part = topic_headers(topic, match.device_key, match.key_kind, match.format)
            cache[topic] = (match, part)
        return match

    @staticmethod
    def _dead(msg: Inbound, reason: Reason, message: str, device: str | None) -> DeadLetter:
        return DeadLetter(
            stage=STAGE,
            reason=reason,
            message=message,
            payload=msg.payload,
            device=device,
            source={"mqtt_topic": msg.topic, "qos": msg.qos, "retain": msg.retain},
        )


def user_properties_of(pairs: Sequence[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    """MQTT 5 user properties as an immutable tuple (paho hands out a list or nothing)."""
    return tuple(pairs) if pairs else ()
