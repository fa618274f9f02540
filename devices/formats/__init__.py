"""Payload decoders, one module per format, all with the interface of ``devices.decoding``.

``DECODERS`` maps every :class:`~kotaflow.wire.raw.PayloadFormat` to its decoder (a test fails
if a format has none); :func:`decode` dispatches on the topic match::

    from devices.formats import decode
    result = decode(payload, match_topic(topic), rx_ms, DecodeContext(load_fleet(settings)))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from devices.decoding import DecodeContext, Decoder, DecodeResult
from devices.formats import chirpstack_v4, native_json, senml_json, tts_v3
from devices.topics import TopicMatch
from kotaflow.wire.raw import PayloadFormat

DECODERS: Mapping[PayloadFormat, Decoder] = MappingProxyType(
    {
        native_json.FORMAT: native_json.decode,
        senml_json.FORMAT: senml_json.decode,
        chirpstack_v4.FORMAT: chirpstack_v4.decode,
        tts_v3.FORMAT: tts_v3.decode,
    }
)


def decode(payload: bytes, match: TopicMatch, rx_ms: int, ctx: DecodeContext) -> DecodeResult:
    """Decode ``payload`` with the decoder of ``match.format``."""
    return DECODERS[match.format](payload, match, rx_ms, ctx)
