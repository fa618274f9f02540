"""The Things Stack v3 uplinks on ``v3/<app>@<tenant>/devices/<device_id>/up``.

Readings come from ``uplink_message.decoded_payload`` (set by a payload formatter), read
like native JSON values. The device is found by its TTS device id (the topic's, which
``end_device_ids.device_id`` must repeat; a registry device's TTS id defaults to its own
id), else by ``end_device_ids.dev_eui``. If the id and the DevEUI point at different
registered devices, the uplink is refused (``device_mismatch``). Time is ``received_at``
(the Application Server's), else ``uplink_message.received_at``, else the receive time.

TTN v2 uplinks (``dev_id``, ``hardware_serial``, ``payload_fields``) are refused with
``unsupported_version``.
"""

from __future__ import annotations

from typing import Any

from devices.decoding import (
    DecodeContext,
    DecodeResult,
    PayloadReadings,
    disabled,
    guarded,
    parse_event,
    rejected,
)
from devices.registry import Device
from devices.topics import TopicMatch
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

FORMAT = PayloadFormat.TTS_V3
V2_FIELDS = ("dev_id", "hardware_serial", "payload_fields")


@guarded(FORMAT)
def decode(payload: bytes, match: TopicMatch, rx_ms: int, ctx: DecodeContext) -> DecodeResult:
    data = parse_event(
        payload,
        match,
        ctx.limits,
        kind="The Things Stack v3 uplink",
        legacy="TTN v2 uplink",
        legacy_fields=V2_FIELDS,
    )
    if isinstance(data, DecodeResult):
        return data
    ids = data.get("end_device_ids")
    if not isinstance(ids, dict):
        return rejected(Reason.BAD_SHAPE, "end_device_ids is missing", match.device_key)
    device = _device(ids, match, ctx)
    if isinstance(device, DecodeResult):
        return device
    out = PayloadReadings.of(device, rx_ms, ctx)
    uplink = data.get("uplink_message")
    if not isinstance(uplink, dict):
        out.reject(Reason.BAD_SHAPE, "not an uplink: uplink_message is missing")
        return out.result
    usable, ts_ms = out.server_time(
        data.get("received_at", uplink.get("received_at")), "received_at"
    )
    if not usable:
        return out.result
    decoded = uplink.get("decoded_payload")
    if decoded is None:
        out.reject(
            Reason.BAD_SHAPE,
            "uplink has no decoded_payload: set a payload formatter for the device",
        )
        return out.result
    out.values(decoded, ts_ms)
    return out.result


def _device(ids: dict[str, Any], match: TopicMatch, ctx: DecodeContext) -> Device | DecodeResult:
    registry = ctx.fleet.registry
    device_id = ids.get("device_id")
    if device_id is not None and device_id != match.device_key:
        return rejected(
            Reason.DEVICE_MISMATCH,
            f"topic names device {match.device_key!r} but end_device_ids.device_id "
            f"is {device_id!r}",
            match.device_key,
        )
    dev_eui = ids.get("dev_eui")
    if dev_eui is not None and not isinstance(dev_eui, str):
        return rejected(
            Reason.BAD_TYPE, "end_device_ids.dev_eui must be a string", match.device_key
        )
    by_id = registry.find(match.device_key, match.key_kind)
    by_eui = registry.by_dev_eui.get(dev_eui.lower()) if dev_eui else None
    if by_id is not None and dev_eui and _disagree(by_id, by_eui):
        return rejected(
            Reason.DEVICE_MISMATCH,
            f"TTS device {match.device_key!r} is registered as {by_id.id} "
            f"(DevEUI {by_id.dev_eui}) but the uplink carries DevEUI {dev_eui}",
            by_id.id,
        )
    device = by_id or by_eui
    if device is None:
        return rejected(
            Reason.UNKNOWN_DEVICE,
            f"no registered device has TTS id {match.device_key!r} or DevEUI {dev_eui}",
            match.device_key,
        )
    return device if device.enabled else disabled(device)


def _disagree(by_id: Device, by_eui: Device | None) -> bool:
    """Whether the uplink's DevEUI belongs to another device than its TTS id names."""
    if by_eui is None:
        return by_id.dev_eui is not None  # the id's device has a DevEUI, and not this one
    return by_eui is not by_id
