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
    BadTimeError,
    DecodeContext,
    DecodeResult,
    PayloadReadings,
    guarded,
    parse_json,
    rejected,
    resolve_device,
    rfc3339_ms,
)
from devices.reading import Reason
from devices.topics import PayloadFormat, TopicMatch

FORMAT = PayloadFormat.CHIRPSTACK_V4
V3_FIELDS = ("devEUI", "objectJSON", "applicationID")


@guarded(FORMAT)
def decode(payload: bytes, match: TopicMatch, rx_ms: int, ctx: DecodeContext) -> DecodeResult:
    data = parse_json(payload, ctx.limits, match.device_key)
    if isinstance(data, DecodeResult):
        return data
    if not isinstance(data, dict):
        return rejected(
            Reason.BAD_SHAPE, "a ChirpStack uplink event is a JSON object", match.device_key
        )
    v3 = [name for name in V3_FIELDS if name in data]
    if v3:
        return rejected(
            Reason.UNSUPPORTED_VERSION,
            f"ChirpStack v3 uplink ({', '.join(v3)}); kotaflow reads v4 events only",
            match.device_key,
        )
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
    ts_ms = None
    if "time" in data:
        try:
            ts_ms = rfc3339_ms(data["time"]) if isinstance(data["time"], str) else None
        except BadTimeError as err:
            out.reject(Reason.BAD_TIME, f"time: {err}")
            return out.result
        if ts_ms is None:
            out.reject(Reason.BAD_TIME, "time must be an RFC 3339 string")
            return out.result
        if not out.time_ok(ts_ms):
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
