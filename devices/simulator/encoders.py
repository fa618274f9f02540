"""How a simulated device writes its readings on the wire: one encoder per payload format.

Every encoder has the same small interface (:class:`Encoder`): the topic a device
publishes on, a payload for one or more timestamped :class:`Frame` s of values, and a
payload of the *wrong shape* for that format (for fault injection). Payloads look like what
real devices and network servers send, incidental fields included (ChirpStack's
``rxInfo``/``txInfo``, The Things Stack's ``rx_metadata``/``settings``, a base64 frame
payload), so the decoders are exercised on realistic input.

* native JSON: ``{"ts": ms, "values": {...}}``; a late burst is an array of those;
* SenML: one pack, base name ``<device>/``, base time in seconds, a unit on every numeric
  record (``vb`` for booleans); a late burst is one pack with relative ``t``;
* ChirpStack v4 and The Things Stack v3 uplinks carry one frame (an uplink is one radio
  frame); their decoded ``object`` / ``decoded_payload`` holds plain numbers.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from devices.registry import Device
from devices.topics import device_topic
from kotaflow.wire.raw import PayloadFormat

# Indonesia's LoRaWAN plan is AS923-2.
_AS923_2_HZ = (921400000, 921600000, 921800000, 922000000, 922200000, 922400000)
Gateway = tuple[str, str, float, float]
"""(name, EUI, latitude, longitude)"""
_GATEWAYS: tuple[Gateway, ...] = (
    ("mgr-gw-ruteng-kota", "7276ff000b031a4e", -8.6110, 120.4637),
    ("mgr-gw-golo-curu", "7276ff000b031b77", -8.6026, 120.4562),
    ("mgr-gw-cancar", "7276ff000b031c02", -8.6431, 120.3527),
    ("mgr-gw-reo", "7276ff000b031d19", -8.3175, 120.4683),
)
_TENANT_ID = "5f0c7e64-91a2-4c36-9ad4-7b1f2c5b8e01"
_APPLICATION_ID = "a0d2e6c1-3b57-4f8e-8c0a-6e9b1d2f4a73"


class Value(NamedTuple):
    """One value as it goes on the wire."""

    metric: str
    sent: Any
    """Number, bool, or (for faults) a string or NaN."""
    unit: str | None = None
    """Unit on the wire; None means the canonical unit, unstated."""


class Frame(NamedTuple):
    """Values measured at one instant."""

    ts_ms: int
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Uplink:
    """Per-message incidentals of a LoRaWAN uplink, drawn by the caller from the seed."""

    f_cnt: int
    rng: random.Random


class Encoder(Protocol):
    format: PayloadFormat
    max_frames: int
    """How many frames one message can carry (1: a late burst is a single old frame)."""
    sends_units: bool
    """Whether values may carry a non-canonical unit on the wire."""

    def topic(self, device: Device) -> str: ...

    def encode(self, device: Device, frames: Sequence[Frame], uplink: Uplink) -> bytes: ...

    def bad_shape(self, device: Device, frame: Frame, uplink: Uplink) -> bytes:
        """A payload of valid JSON that the format's decoder must refuse as ``bad_shape``."""
        ...


_JSON = json.JSONEncoder(separators=(",", ":"))  # stateless; built once for speed


def dumps(data: Any) -> bytes:
    """Compact JSON; NaN is written as the bare ``NaN`` token sloppy devices send."""
    return _JSON.encode(data).encode()


def iso_ms(ts_ms: int) -> str:
    """RFC 3339 UTC time with milliseconds, as network servers write it."""
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def plain(frame: Frame) -> dict[str, Any]:
    """``{metric: value}`` of a frame (canonical units: these formats send no unit)."""
    return {v.metric: v.sent for v in frame.values}


def frame_bytes(frame: Frame) -> bytes:
    """A plausible binary frame payload: each value x100 as a big-endian int32."""
    scaled = []
    for value in frame.values:
        number = value.sent
        if isinstance(number, int | float) and math.isfinite(number):
            scaled.append(max(-(2**31), min(2**31 - 1, int(number * 100))))
        else:
            scaled.append(0)
    return struct.pack(f">{len(scaled)}i", *scaled)


class NativeEncoder:
    format = PayloadFormat.NATIVE_JSON
    max_frames = 48
    sends_units = False

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.id)

    def encode(self, device: Device, frames: Sequence[Frame], uplink: Uplink) -> bytes:
        entries = [{"ts": f.ts_ms, "values": plain(f)} for f in frames]
        return dumps(entries[0] if len(entries) == 1 else entries)

    def bad_shape(self, device: Device, frame: Frame, uplink: Uplink) -> bytes:
        if uplink.rng.random() < 0.5:  # values as a bare list: which number is which?
            return dumps({"ts": frame.ts_ms, "values": [v.sent for v in frame.values]})
        return dumps({"device": device.id, "ts": frame.ts_ms, "values": plain(frame)})


class SenmlEncoder:
    format = PayloadFormat.SENML_JSON
    max_frames = 48
    sends_units = True

    def __init__(self, canonical_units: Mapping[str, str]) -> None:
        self._canonical = canonical_units

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.id)

    def encode(self, device: Device, frames: Sequence[Frame], uplink: Uplink) -> bytes:
        base_ms = frames[0].ts_ms
        pack: list[dict[str, Any]] = [{"bn": f"{device.id}/", "bt": base_ms / 1000}]
        for frame in frames:
            for value in frame.values:
                record = self._record(value)
                if frame.ts_ms != base_ms:
                    record["t"] = (frame.ts_ms - base_ms) / 1000
                pack.append(record)
        pack[1] = {**pack[0], **pack[1]}  # base fields ride on the first record
        return dumps(pack[1:])

    def _record(self, value: Value) -> dict[str, Any]:
        if isinstance(value.sent, bool):
            return {"n": value.metric, "vb": value.sent}
        unit = value.unit or self._canonical.get(value.metric)
        record: dict[str, Any] = {"n": value.metric}
        if unit:
            record["u"] = unit
        record["v"] = value.sent
        return record

    def bad_shape(self, device: Device, frame: Frame, uplink: Uplink) -> bytes:
        # The pre-RFC draft's object with an "e" array, still in some old firmware.
        entries = [self._record(v) for v in frame.values]
        return dumps({"bn": f"{device.id}/", "bt": frame.ts_ms / 1000, "e": entries})


class ChirpstackEncoder:
    format = PayloadFormat.CHIRPSTACK_V4
    max_frames = 1
    sends_units = False

    def __init__(self, profile_ids: Mapping[str, str]) -> None:
        self._profiles = profile_ids
        self._gateway = _Gateways()

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.id, device.dev_eui)

    def encode(self, device: Device, frames: Sequence[Frame], uplink: Uplink) -> bytes:
        event = self._event(device, frames[0], uplink)
        event["object"] = plain(frames[0])
        return dumps(event)

    def bad_shape(self, device: Device, frame: Frame, uplink: Uplink) -> bytes:
        return dumps(self._event(device, frame, uplink))  # no codec: no "object"

    def _event(self, device: Device, frame: Frame, uplink: Uplink) -> dict[str, Any]:
        rng = uplink.rng
        when = iso_ms(frame.ts_ms)
        _, gateway_eui, lat, lon = self._gateway(device)
        return {
            "deduplicationId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "time": when,
            "deviceInfo": {
                "tenantId": _TENANT_ID,
                "tenantName": "Pemkab Manggarai",
                "applicationId": _APPLICATION_ID,
                "applicationName": "kotaflow",
                "deviceProfileId": self._profiles.get(device.type, _APPLICATION_ID),
                "deviceProfileName": device.type,
                "deviceName": device.id,
                "devEui": device.dev_eui,
                "deviceClassEnabled": "CLASS_A",
                "tags": {"kecamatan": device.kecamatan},
            },
            "devAddr": f"{rng.getrandbits(32) & 0x01FFFFFF | 0x26000000:08x}",
            "adr": True,
            "dr": 3,
            "fCnt": uplink.f_cnt,
            "fPort": 2,
            "data": base64.b64encode(frame_bytes(frame)).decode(),
            "rxInfo": [
                {
                    "gatewayId": gateway_eui,
                    "uplinkId": rng.getrandbits(32),
                    "gwTime": when,
                    "nsTime": when,
                    "rssi": -rng.randint(70, 118),
                    "snr": round(rng.uniform(-7.5, 9.5), 1),
                    "channel": rng.randrange(len(_AS923_2_HZ)),
                    "location": {"latitude": lat, "longitude": lon},
                    "context": base64.b64encode(rng.randbytes(4)).decode(),
                    "metadata": {"region_config_id": "as923_2", "region_common_name": "AS923_2"},
                    "crcStatus": "CRC_OK",
                }
            ],
            "txInfo": {
                "frequency": rng.choice(_AS923_2_HZ),
                "modulation": {
                    "lora": {"bandwidth": 125000, "spreadingFactor": 9, "codeRate": "CR_4_5"}
                },
            },
        }


class TtsEncoder:
    format = PayloadFormat.TTS_V3
    max_frames = 1
    sends_units = False

    def __init__(self) -> None:
        self._gateway = _Gateways()

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.ns_device_id)

    def encode(self, device: Device, frames: Sequence[Frame], uplink: Uplink) -> bytes:
        up = self._uplink(device, frames[0], uplink)
        up["uplink_message"]["decoded_payload"] = plain(frames[0])
        return dumps(up)

    def bad_shape(self, device: Device, frame: Frame, uplink: Uplink) -> bytes:
        return dumps(self._uplink(device, frame, uplink))  # no payload formatter

    def _uplink(self, device: Device, frame: Frame, uplink: Uplink) -> dict[str, Any]:
        rng = uplink.rng
        when = iso_ms(frame.ts_ms)
        gateway, gateway_eui, lat, lon = self._gateway(device)
        ids: dict[str, Any] = {
            "device_id": device.ns_device_id,
            "application_ids": {"application_id": "manggarai"},
        }
        if device.dev_eui:
            ids["dev_eui"] = device.dev_eui.upper()
            ids["join_eui"] = "70B3D57ED0000000"
        concentrator = rng.getrandbits(32)
        return {
            "end_device_ids": ids,
            "correlation_ids": [f"as:up:{rng.getrandbits(80):020X}"],
            "received_at": when,
            "uplink_message": {
                "f_port": 2,
                "f_cnt": uplink.f_cnt,
                "frm_payload": base64.b64encode(frame_bytes(frame)).decode(),
                "rx_metadata": [
                    {
                        "gateway_ids": {"gateway_id": gateway, "eui": gateway_eui.upper()},
                        "time": when,
                        "timestamp": concentrator,
                        "rssi": -rng.randint(70, 118),
                        "channel_rssi": -rng.randint(70, 118),
                        "snr": round(rng.uniform(-7.5, 9.5), 2),
                        "location": {
                            "latitude": lat,
                            "longitude": lon,
                            "source": "SOURCE_REGISTRY",
                        },
                        "received_at": when,
                    }
                ],
                "settings": {
                    "data_rate": {
                        "lora": {"bandwidth": 125000, "spreading_factor": 9, "coding_rate": "4/5"}
                    },
                    "frequency": str(rng.choice(_AS923_2_HZ)),
                    "timestamp": concentrator,
                },
                "received_at": when,
                "consumed_airtime": "0.185344s",
                "network_ids": {"net_id": "000013", "tenant_id": "kotaflow", "cluster_id": "au1"},
            },
        }


class _Gateways:
    """The gateway nearest each device (the one a real uplink is heard by first), memoised."""

    def __init__(self) -> None:
        self._of: dict[str, Gateway] = {}

    def __call__(self, device: Device) -> Gateway:
        found = self._of.get(device.id)
        if found is None:
            lat, lon = device.latitude, device.longitude
            found = min(_GATEWAYS, key=lambda g: (g[2] - lat) ** 2 + (g[3] - lon) ** 2)
            self._of[device.id] = found
        return found


class Encoders:
    """The encoder of each format, built once per run."""

    def __init__(self, canonical_units: Mapping[str, str], device_types: Sequence[str]) -> None:
        profiles = {t: str(uuid.uuid5(uuid.NAMESPACE_URL, f"kotaflow:{t}")) for t in device_types}
        self._by_format: Mapping[PayloadFormat, Encoder] = MappingProxyType(
            {
                PayloadFormat.NATIVE_JSON: NativeEncoder(),
                PayloadFormat.SENML_JSON: SenmlEncoder(canonical_units),
                PayloadFormat.CHIRPSTACK_V4: ChirpstackEncoder(profiles),
                PayloadFormat.TTS_V3: TtsEncoder(),
            }
        )

    def __getitem__(self, fmt: PayloadFormat) -> Encoder:
        return self._by_format[fmt]
