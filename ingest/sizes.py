"""How large a message may be, decided by one setting: ``bridge.max_payload_bytes``.

Every other size limit on a message's way follows from it, so they cannot disagree:

- Mosquitto ``message_size_limit`` = the payload limit: the broker refuses a bigger publish
  at once (QoS 1 over MQTT 5: PUBACK with reason code 0x95 "packet too large"; it is not
  forwarded). ``max_packet_size`` is not used: Mosquitto disconnects the client for it, and
  a device whose outbox holds the big message would reconnect and resend it forever.
- The largest Kafka record the bridge writes, :attr:`SizeLimits.record_bytes`: a dead letter
  carries the payload base64-encoded (4/3) plus a bounded envelope (topic, headers).
  Anything bigger (huge MQTT 5 user properties, say) is dead-lettered compactly: a prefix,
  the full length and the SHA-256 (:meth:`kotaflow.wire.deadletter.DeadLetter.compact`).
- The producer's ``max_request_size`` and the topics' ``max.message.bytes``,
  :attr:`SizeLimits.request_bytes`: the largest batch the bridge can send, one full batch
  or one record of the largest size, whichever is larger.

``kotaflow stack up`` creates the topics with that ``max.message.bytes`` and refuses
existing ones with less; the bridge checks the same at start (:func:`check_topic_sizes`).
Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kotaflow.settings import BridgeSettings

ENVELOPE_BYTES = 16_384
"""Room for the record's key, headers and the dead letter's JSON around the payload."""
BATCH_OVERHEAD_BYTES = 1_024
"""A record batch's own header and per-record framing, with room to spare."""
KAFKA_DEFAULT_MESSAGE_BYTES = 1_048_588
"""Kafka's default ``max.message.bytes``; topics are never created below it."""


class SizeLimitError(RuntimeError):
    """Two size limits disagree; the message names both values and how to fix it."""


@dataclass(frozen=True, slots=True)
class SizeLimits:
    payload_bytes: int
    """Largest MQTT payload: the broker's ``message_size_limit``, the bridge's edge check."""
    record_bytes: int
    """Largest Kafka record the bridge appends; bigger ones become compact dead letters."""
    request_bytes: int
    """Producer ``max_request_size``; the least ``max.message.bytes`` of the topics."""

    @classmethod
    def of(cls, bridge: BridgeSettings) -> SizeLimits:
        payload = bridge.max_payload_bytes
        record = -(-payload * 4 // 3) + ENVELOPE_BYTES
        request = max(bridge.max_batch_bytes, record) + BATCH_OVERHEAD_BYTES
        return cls(payload, record, request)

    @property
    def topic_message_bytes(self) -> int:
        """What ``stack up`` creates the bridge's topics with (never below Kafka's default)."""
        return max(self.request_bytes, KAFKA_DEFAULT_MESSAGE_BYTES)


def check_topic_sizes(limits: SizeLimits, found: Mapping[str, int]) -> None:
    """Raise :class:`SizeLimitError` if a topic's ``max.message.bytes`` (``found``: topic ->
    value) is below what the bridge may send to it."""
    short = {topic: value for topic, value in found.items() if value < limits.request_bytes}
    if short:
        listed = ", ".join(f"{t} max.message.bytes={v}" for t, v in sorted(short.items()))
        raise SizeLimitError(
            f"Kafka topics accept less than the bridge may send: {listed}; the bridge needs "
            f"{limits.request_bytes} (bridge.max_payload_bytes={limits.payload_bytes}, "
            f"bridge.max_batch_bytes and record envelope, see ingest/sizes.py). Raise the "
            "topics' max.message.bytes (kafka-configs.sh --alter) or lower the bridge's limits."
        )
