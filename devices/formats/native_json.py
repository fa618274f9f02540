"""Native JSON on ``kotaflow/<device_id>/telemetry``: the ThingsBoard device-API shapes.

Accepted, as many devices already speak them:

* ``{"temperature": 21.4, "humidity": 80}`` - no time: the reading gets the receive time
  and the ``receive_time`` flag;
* ``{"ts": 1764300000000, "values": {...}}`` - ``ts`` in epoch milliseconds or RFC 3339;
* a JSON array of either (buffered uploads), each entry judged on its own;
* any value may be ``{"v": 70, "u": "degF"}`` to send a non-canonical unit.

An object with ``ts`` or ``values`` must have exactly those two keys (a stray key there is
far more likely a typo than a metric called ``ts``).
"""

from __future__ import annotations

from typing import Any

from devices.decoding import (
    BadTimeError,
    DecodeContext,
    DecodeResult,
    PayloadReadings,
    epoch_ms,
    guarded,
    parse_json,
    resolve_device,
)
from devices.topics import TopicMatch
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

FORMAT = PayloadFormat.NATIVE_JSON


@guarded(FORMAT)
def decode(payload: bytes, match: TopicMatch, rx_ms: int, ctx: DecodeContext) -> DecodeResult:
    data = parse_json(payload, ctx.limits, match.device_key)
    if isinstance(data, DecodeResult):
        return data
    device = resolve_device(ctx.fleet, match)
    if isinstance(device, DecodeResult):
        return device
    out = PayloadReadings.of(device, rx_ms, ctx)
    if isinstance(data, list):
        if not data:
            out.reject(Reason.BAD_SHAPE, "the array holds no entries")
        for entry in data:
            _entry(out, entry)
    else:
        _entry(out, data)
    return out.result


def _entry(out: PayloadReadings, entry: Any) -> None:
    if not isinstance(entry, dict):
        out.reject(
            Reason.BAD_SHAPE,
            f"expected an object ({{metric: value}} or {{ts, values}}), got {type(entry).__name__}",
        )
        return
    if "ts" not in entry and "values" not in entry:  # (no set built per message)
        out.values(entry, None)
        return
    if len(entry) != 2 or "ts" not in entry or "values" not in entry:
        keys = ", ".join(sorted(entry))
        out.reject(Reason.BAD_SHAPE, f"a timed entry has exactly ts and values, got: {keys}")
        return
    try:
        ts_ms = epoch_ms(entry["ts"])
    except BadTimeError as err:
        out.reject(Reason.BAD_TIME, f"ts: {err}")
        return
    if out.time_ok(ts_ms):
        out.values(entry["values"], ts_ms)
