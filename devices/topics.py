"""Which MQTT topics carry device data, in which payload format, from which device.

The bridge uses this to key Kafka records by device and to dead-letter topics that match
no known pattern; the validate stage uses the same answer to pick a decoder. One table,
so the two can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kotaflow.wire.raw import DeviceKeyKind, PayloadFormat


@dataclass(frozen=True, slots=True)
class TopicMatch:
    format: PayloadFormat
    device_key: str
    key_kind: DeviceKeyKind
    application: str | None = None


_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"
_PATTERNS: tuple[tuple[re.Pattern[str], PayloadFormat, DeviceKeyKind], ...] = (
    (
        re.compile(rf"^kotaflow/(?P<dev>{_SEGMENT})/telemetry$"),
        PayloadFormat.NATIVE_JSON,
        DeviceKeyKind.DEVICE_ID,
    ),
    (
        re.compile(rf"^kotaflow/(?P<dev>{_SEGMENT})/senml$"),
        PayloadFormat.SENML_JSON,
        DeviceKeyKind.DEVICE_ID,
    ),
    (
        re.compile(
            rf"^application/(?P<app>{_SEGMENT})/device/(?P<dev>[0-9A-Fa-f]{{16}})/event/up$"
        ),
        PayloadFormat.CHIRPSTACK_V4,
        DeviceKeyKind.DEV_EUI,
    ),
    (
        re.compile(
            rf"^v3/(?P<app>{_SEGMENT})(?:@(?P<tenant>{_SEGMENT}))?/devices/(?P<dev>{_SEGMENT})/up$"
        ),
        PayloadFormat.TTS_V3,
        DeviceKeyKind.NS_DEVICE_ID,
    ),
)

SUBSCRIPTIONS: tuple[str, ...] = (
    "kotaflow/+/telemetry",
    "kotaflow/+/senml",
    "application/+/device/+/event/up",
    "v3/+/devices/+/up",
)
"""MQTT topic filters covering every pattern above (the bridge subscribes to these)."""


def match_topic(topic: str) -> TopicMatch | None:
    """The format and device key a topic carries, or None if it is not a device topic."""
    for pattern, fmt, kind in _PATTERNS:
        found = pattern.match(topic)
        if found is not None:
            dev = found.group("dev")
            if kind is DeviceKeyKind.DEV_EUI:
                dev = dev.lower()
            return TopicMatch(fmt, dev, kind, found.groupdict().get("app"))
    return None


def device_topic(fmt: PayloadFormat, device_id: str, dev_eui: str | None = None) -> str:
    """The topic a device publishes on in ``fmt`` (used by the simulator)."""
    if fmt is PayloadFormat.NATIVE_JSON:
        return f"kotaflow/{device_id}/telemetry"
    if fmt is PayloadFormat.SENML_JSON:
        return f"kotaflow/{device_id}/senml"
    if fmt is PayloadFormat.CHIRPSTACK_V4:
        if dev_eui is None:
            raise ValueError(f"device {device_id} has no DevEUI for ChirpStack topics")
        return f"application/manggarai/device/{dev_eui.lower()}/event/up"
    return f"v3/manggarai@kotaflow/devices/{device_id}/up"
