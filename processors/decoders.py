"""Which ``devices/formats`` decoder handles a payload format (looked up once per format).

Each format module ``devices/formats/<format with _ for ->.py`` exposes
``decode(payload, match, rx_ms, ctx) -> DecodeResult``; this is the only place the validate
stage learns that naming rule.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from devices.decoding import DecodeContext, DecodeResult
from devices.topics import PayloadFormat, TopicMatch

Decoder = Callable[[bytes, TopicMatch, int, DecodeContext], DecodeResult]


def decoder_for(fmt: PayloadFormat) -> Decoder:
    module = importlib.import_module(f"devices.formats.{fmt.value.replace('-', '_')}")
    return cast(Decoder, module.decode)
