"""The raw record on ``kotaflow.raw``: the device's bytes untouched, context in headers.

Schema, version 1 (``kf.v`` = ``1``):

=================  ==============================================================
Kafka key          device key from the topic (our id, lower-case DevEUI or NS id)
Kafka value        the MQTT payload, byte for byte
Kafka timestamp    the bridge's receive time (CreateTime), the same as ``kf.rx_ms``
``kf.v``           envelope version, ASCII decimal
``kf.topic``       MQTT topic the message arrived on
``kf.device``      device key (same as the Kafka key)
``kf.key_kind``    ``device_id`` | ``dev_eui`` | ``ns_device_id``
``kf.format``      payload format (:class:`PayloadFormat`)
``kf.rx_ms``       bridge receive time, ms since the Unix epoch (UTC), ASCII decimal
``kf.qos``         MQTT QoS of the delivery, ``kf.retain`` ``1`` if retained
``kf.ct``          MQTT 5 content type, when the device set one
``kf.up.<name>``   MQTT 5 user properties, when the device (or an edge) set them
=================  ==============================================================

An edge gateway (edge/) adds two user properties: ``kf.up.edge_rx_ms`` (when the edge
received the message, ms since the epoch) and ``kf.up.edge`` (its name). For a message
with ``edge_rx_ms``, :meth:`RawEnvelope.taken_ms` is that time, not the bridge's.

Keeping the payload out of any wrapper means no copy or re-encoding on the hot path and a
record that can always be replayed through a newer decoder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

ENVELOPE_VERSION = 1
EDGE_RX_PROPERTY = "edge_rx_ms"
"""MQTT 5 user property an edge gateway sets: its receive time, ms since the Unix epoch."""
EDGE_NAME_PROPERTY = "edge"
"""MQTT 5 user property an edge gateway sets: its name (``edge.name``)."""


class PayloadFormat(StrEnum):
    NATIVE_JSON = "native-json"
    SENML_JSON = "senml-json"
    CHIRPSTACK_V4 = "chirpstack-v4"
    TTS_V3 = "tts-v3"


class DeviceKeyKind(StrEnum):
    """How the topic names its device: our own id, a LoRaWAN DevEUI or a network-server id."""

    DEVICE_ID = "device_id"
    DEV_EUI = "dev_eui"
    NS_DEVICE_ID = "ns_device_id"


Headers = list[tuple[str, bytes]]


class RawEnvelope(NamedTuple):
    """One raw record, as the bridge writes it and the validate stage reads it back.

    A named tuple rather than a frozen dataclass: validate rebuilds one per record, and a
    tuple is made several times faster."""

    payload: bytes
    mqtt_topic: str
    device_key: str
    key_kind: DeviceKeyKind
    format: PayloadFormat
    rx_ms: int
    qos: int = 1
    retain: bool = False
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()

    def key(self) -> bytes:
        return self.device_key.encode()

    def taken_ms(self) -> int:
        """When the message was first received: an edge's :data:`EDGE_RX_PROPERTY` if it
        carries a valid one (not later than the bridge's), else :attr:`rx_ms`. Decoders take
        it as "now" for payloads without their own time."""
        if self.user_properties:
            for name, value in self.user_properties:
                if name == EDGE_RX_PROPERTY and value.isdigit() and int(value) <= self.rx_ms:
                    return int(value)
        return self.rx_ms

    def headers(self, topic_part: Headers | None = None) -> Headers:
        """All headers; ``topic_part`` is :func:`topic_headers` for this envelope's topic,
        passed by callers that cache it (the bridge does: it is the same for every message
        of a topic)."""
        headers: Headers = list(
            topic_part
            if topic_part is not None
            else topic_headers(self.mqtt_topic, self.device_key, self.key_kind, self.format)
        )
        headers.append(("kf.rx_ms", str(self.rx_ms).encode()))
        headers.append(("kf.qos", str(self.qos).encode()))
        if self.retain:
            headers.append(("kf.retain", b"1"))
        if self.content_type:
            headers.append(("kf.ct", self.content_type.encode()))
        headers.extend((f"kf.up.{k}", v.encode()) for k, v in self.user_properties)
        return headers


def topic_headers(
    mqtt_topic: str, device_key: str, key_kind: DeviceKeyKind, fmt: PayloadFormat
) -> Headers:
    """The leading headers, which depend only on the MQTT topic."""
    return [
        ("kf.v", b"1"),
        ("kf.topic", mqtt_topic.encode()),
        ("kf.device", device_key.encode()),
        ("kf.key_kind", key_kind.value.encode()),
        ("kf.format", fmt.value.encode()),
    ]


def plain_tails(rx_ms: int) -> tuple[Headers, Headers]:
    """The headers after :func:`topic_headers` of a QoS 0 and of a QoS 1 message received at
    ``rx_ms`` that is not retained and carries no MQTT 5 properties: what
    :meth:`RawEnvelope.headers` gives for it, made once per burst by the bridge."""
    rx = str(rx_ms).encode()
    return [("kf.rx_ms", rx), ("kf.qos", b"0")], [("kf.rx_ms", rx), ("kf.qos", b"1")]


class EnvelopeError(ValueError):
    """A record on the raw topic lacks what version 1 of the envelope promises."""


def parse_envelope(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> RawEnvelope:
    """Rebuild the envelope from a consumed Kafka record; raise EnvelopeError if malformed.

    The validate stage calls this for every record, so the usual header values are looked
    up in tables instead of parsed (any other value takes the general path, with the same
    result or error).
    """
    if len(headers) == 7:  # the bridge's own order and values: no dict, no parsing
        (k0, v0), (k1, t), (k2, d), (k3, kind), (k4, fmt), (k5, rx), (k6, qos) = headers
        key_kind = _KEY_KINDS.get(kind)
        payload_format = _FORMATS.get(fmt)
        if (
            (k0, k1, k2, k3, k4, k5, k6) == _BRIDGE_ORDER
            and v0 == b"1"
            and key_kind is not None
            and payload_format is not None
            and (qos == b"1" or qos == b"0")
            and rx.isdigit()
        ):
            try:  # (not contextlib.suppress: that cost ~0.8 us per record)
                return RawEnvelope(
                    value or b"",
                    t.decode(),
                    d.decode(),
                    key_kind,
                    payload_format,
                    int(rx),
                    1 if qos == b"1" else 0,
                )
            except UnicodeDecodeError:
                pass  # the general path says why
    found = dict(headers)
    try:
        version = found["kf.v"]
        if version != b"1" and int(version) != ENVELOPE_VERSION:
            raise EnvelopeError(f"envelope version {int(version)} is not supported")
        user = (
            ()
            if _PLAIN_KEYS.issuperset(found)  # the usual record: no user property to find
            else tuple(
                [
                    (k.removeprefix("kf.up."), v.decode(errors="replace"))
                    for k, v in headers
                    if k.startswith("kf.up.")
                ]
            )
        )
        ct = found.get("kf.ct")
        topic = found["kf.topic"].decode()
        device = found["kf.device"].decode()
        kind = found["kf.key_kind"]
        key_kind = _KEY_KINDS.get(kind) or DeviceKeyKind(kind.decode())
        fmt = found["kf.format"]
        payload_format = _FORMATS.get(fmt) or PayloadFormat(fmt.decode())
        rx_ms = int(found["kf.rx_ms"])
        qos = found.get("kf.qos", b"1")
        return RawEnvelope(
            value or b"",
            topic,
            device,
            key_kind,
            payload_format,
            rx_ms,
            1 if qos == b"1" else int(qos),
            found.get("kf.retain") == b"1",
            ct.decode() if ct else None,
            user,
        )
    except KeyError as err:
        raise EnvelopeError(f"missing header {err.args[0]}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise EnvelopeError(f"malformed header: {err}") from None


class EnvelopeReader:
    """:func:`parse_envelope` for a stream of records: the five leading headers of a plain
    record (they depend only on the MQTT topic) are parsed once and remembered, so a
    record of a known topic costs a lookup and the receive time. One per consumer; the
    memory is bounded (forgotten all at once when ``capacity`` topics are known)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._known: dict[
            tuple[tuple[str, bytes], ...], tuple[str, str, DeviceKeyKind, PayloadFormat]
        ] = {}

    def read(self, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> RawEnvelope:
        """What :func:`parse_envelope` returns (or raises) for the same record."""
        if len(headers) != 7:
            return parse_envelope(value, headers)
        lead = tuple(headers[:5])
        known = self._known.get(lead)
        if known is not None:
            (k5, rx), (k6, qos) = headers[5], headers[6]
            plain = qos == b"1" or qos == b"0"
            if plain and k5 == "kf.rx_ms" and k6 == "kf.qos" and rx.isdigit():
                topic, device, kind, fmt = known
                q = 1 if qos == b"1" else 0
                return _envelope(
                    (value or b"", topic, device, kind, fmt, int(rx), q, False, None, ())
                )
        env = parse_envelope(value, headers)
        if known is None and env.qos in (0, 1) and tuple(k for k, _ in headers) == _BRIDGE_ORDER:
            if len(self._known) >= self._capacity:
                self._known.clear()
            self._known[lead] = (env.mqtt_topic, env.device_key, env.key_kind, env.format)
        return env


_envelope: Callable[[tuple[object, ...]], RawEnvelope] = functools.partial(
    tuple.__new__, RawEnvelope
)
"""``_envelope((field, ...))`` is ``RawEnvelope(field, ...)`` made in C, without the
named-tuple ``__new__`` frame; every field must be given (defaults do not apply)."""


_BRIDGE_ORDER = ("kf.v", "kf.topic", "kf.device", "kf.key_kind", "kf.format", "kf.rx_ms", "kf.qos")
"""The headers of a plain message (QoS 0/1, not retained, no MQTT 5 properties), in the
order the bridge writes them."""

_PLAIN_KEYS = frozenset(
    {"kf.v", "kf.topic", "kf.device", "kf.key_kind", "kf.format", "kf.rx_ms", "kf.qos"}
    | {"kf.retain", "kf.ct"}
)
"""Every header of version 1 except the ``kf.up.*`` ones."""

_KEY_KINDS: Mapping[bytes, DeviceKeyKind] = MappingProxyType(
    {k.value.encode(): k for k in DeviceKeyKind}
)
_FORMATS: Mapping[bytes, PayloadFormat] = MappingProxyType(
    {f.value.encode(): f for f in PayloadFormat}
)
