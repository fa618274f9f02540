"""What the bridge does with one MQTT message: forward it to the raw topic, or dead-letter it.

Decided here, at the edge, before anything reaches Kafka's raw topic:

- a payload larger than ``max_payload_bytes`` -> ``oversize``;
- a topic that matches no device pattern (``devices.topics.match_topic``) -> ``unknown_topic``;
- a device over its token bucket (:mod:`ingest.ratelimit`) -> ``rate_limited``, unless the
  caller says the message is exempt (the session backlog, see :mod:`ingest.ratelimit`);
- anything else -> a :class:`~kotaflow.wire.raw.RawEnvelope` with the payload untouched.

Dead letters keep the whole payload and the MQTT topic so they can be replayed, except an
oversize one: it keeps a prefix, the full length and the SHA-256
(:meth:`~kotaflow.wire.deadletter.DeadLetter.compact`), so it always fits in a Kafka record.
:meth:`EdgePolicy.refused` makes the same compact dead letter for a record the producer
refused (:mod:`ingest.sizes`). Pure logic,
no I/O: the caller passes the clock readings. Topic lookups (and the record headers that
depend only on the topic) are memoised in a bounded table because a fleet reuses a few
thousand topics millions of times; unknown topics are not memoised, so junk cannot fill it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devices.topics import TopicMatch, match_topic
from ingest.ratelimit import DeviceRateLimiter
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.raw import Headers, RawEnvelope, topic_headers
from kotaflow.wire.reasons import Reason

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


@dataclass(frozen=True, slots=True)
class Route:
    """Where a known device topic's messages go: Kafka key and the per-topic headers."""

    match: TopicMatch
    device_key: str
    key: bytes
    topic_headers: Headers


class EdgePolicy:
    """Classifies inbound messages; one instance per bridge (it holds the rate buckets).

    :meth:`route` is the decision, made on the raw topic bytes for the bridge's hot path;
    :meth:`classify` wraps it into an envelope or a dead letter for one whole message.
    """

    __slots__ = ("_limiter", "_max_payload", "_routes", "_routes_max")

    def __init__(
        self,
        max_payload_bytes: int,
        limiter: DeviceRateLimiter | None,
        topic_cache_size: int = 50_000,
    ) -> None:
        self._max_payload = max_payload_bytes
        self._limiter = limiter
        self._routes: dict[bytes, Route] = {}
        self._routes_max = topic_cache_size

    def route(self, topic: bytes, size: int, now: float, limited: bool = True) -> Route | Reason:
        """Forward (a :class:`Route`) or the dead-letter reason, for a payload of ``size``
        bytes on ``topic``; ``now`` is monotonic seconds (for the rate limit), ``limited``
        False exempts the message from the rate limit."""
        route = self._routes.get(topic)
        if route is None:
            route = self._learn(topic)
        if size > self._max_payload:
            return Reason.OVERSIZE
        if route is None:
            return Reason.UNKNOWN_TOPIC
        if limited and self._limiter is not None and not self._limiter.allow(route.device_key, now):
            return Reason.RATE_LIMITED
        return route

    def classify(self, msg: Inbound, rx_ms: int, now: float) -> RawEnvelope | DeadLetter:
        """``rx_ms``: wall clock (ms since epoch) for the record; ``now``: monotonic seconds."""
        decision = self.route(msg.topic.encode(), len(msg.payload), now)
        if isinstance(decision, Reason):
            return self.dead_letter(msg, decision)
        return self.envelope(msg, decision, rx_ms)

    @staticmethod
    def envelope(msg: Inbound, route: Route, rx_ms: int) -> RawEnvelope:
        """The raw envelope of ``msg``, which :meth:`route` forwarded along ``route``."""
        match = route.match
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

    def dead_letter(self, msg: Inbound, reason: Reason) -> DeadLetter:
        """The dead letter for ``msg``, refused by :meth:`route` for ``reason`` (compact for
        ``oversize``)."""
        size = len(msg.payload)
        text = {
            Reason.OVERSIZE: f"payload {size} bytes > limit {self._max_payload}",
            Reason.UNKNOWN_TOPIC: "topic matches no device pattern",
            Reason.RATE_LIMITED: "device over its per-device rate limit",
        }.get(reason, reason.value)
        dead = self._letter(msg, reason, text)
        return dead.compact() if reason is Reason.OVERSIZE else dead

    def refused(self, msg: Inbound, error: str) -> DeadLetter:
        """The compact ``oversize`` dead letter for a message whose record the producer
        refused (``error`` says why)."""
        return self._letter(msg, Reason.OVERSIZE, f"record refused: {error}").compact()

    def _letter(self, msg: Inbound, reason: Reason, text: str) -> DeadLetter:
        route = self._routes.get(msg.topic.encode())
        return DeadLetter(
            stage=STAGE,
            reason=reason,
            message=text,
            payload=msg.payload,
            device=route.device_key if route is not None else None,
            source={"mqtt_topic": msg.topic, "qos": msg.qos, "retain": msg.retain},
        )

    def _learn(self, topic: bytes) -> Route | None:
        """Match a topic not seen yet; remember it if it is a device's (junk is not kept)."""
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            return None
        match = match_topic(text)
        if match is None:
            return None
        if len(self._routes) >= self._routes_max:
            self._routes.clear()  # cheaper than LRU bookkeeping; refills from the live topics
        route = Route(
            match,
            match.device_key,
            match.device_key.encode(),
            topic_headers(text, match.device_key, match.key_kind, match.format),
        )
        self._routes[topic] = route
        return route


def decode_topic(topic: bytes) -> str:
    """A topic as text; bytes that are not UTF-8 are escaped, never fatal."""
    try:
        return topic.decode()
    except UnicodeDecodeError:
        return topic.decode("utf-8", "backslashreplace")


def user_properties_of(pairs: Sequence[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    """MQTT 5 user properties as an immutable tuple (paho hands out a list or nothing)."""
    return tuple(pairs) if pairs else ()
