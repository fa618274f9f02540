"""ChirpStack v4 uplink events on ``application/<app>/device/<dev_eui>/event/up``.

Readings come from ``object`` (set only when the device profile has a codec), read like
native JSON values (``{metric: number}`` or ``{metric: {"v": x, "u": unit}}``). The device
is the one whose DevEUI the topic names; ``deviceInfo.devEui`` must agree. Time is the
event's ``time`` (RFC 3339, nanoseconds allowed), else the receive time.

ChirpStack v3 events (``devEUI`` in base64, ``objectJSON`` string, ``applicationID``) are
refused with ``unsupported_version`` rather than half-read.
"""

from __future__ import annotations

from devices.decoding import (
    DecodeContext,
    DecodeResult,
    PayloadReadings,
    guarded,
    parse_event,
    rejected,
    resolve_device,
)
from devices.topics import TopicMatch
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

FORMAT = PayloadFormat.CHIRPSTACK_V4
V3_FIELDS = ("devEUI", "objectJSON", "applicationID")


@guarded(FORMAT)
def decode(payload: bytes, match: TopicMatch, rx_ms: int, ctx: DecodeContext) -> DecodeResult:
    data = parse_event(
        payload,
        match,
        ctx.limits,
        kind="ChirpStack v4 uplink event",
        legacy="ChirpStack v3 uplink",
        legacy_fields=V3_FIELDS,
    )
    if isinstance(data, DecodeResult):
        return data
    info = data.get("deviceInfo")
    dev_eui = info.get("devEui") if isinstance(info, dict) else None
    if not isinstance(dev_eui, str):
        return rejected(Reason.BAD_SHAPE, "deviceInfo.devEui is missing", match.device_key)
    if dev_eui.lower() != match.device_key.lower():
        return rejected(
            Reason.DEVICE_MISMATCH,
            f"topic names DevEUI {match.device_key} but deviceInfo.devEui is {dev_eui}",
            match.device_key,
        )
    device = resolve_device(ctx.fleet, match)
    if isinstance(device, DecodeResult):
        return device
    out = PayloadReadings.of(device, rx_ms, ctx)
    usable, ts_ms = out.server_time(data.get("time"), "time")
    if not usable:
        return out.result
    obj = data.get("object")
    if obj is None:
        out.reject(
            Reason.BAD_SHAPE,
            "uplink has no decoded object: configure a codec in the ChirpStack device profile",
        )
        return out.result
    out.values(obj, ts_ms)
    return out.result
