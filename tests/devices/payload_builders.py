"""Build a payload in each format from the same readings, so one test can run on all.

A value is a number/bool/str, or ``(value, unit)`` to send a non-canonical unit.
``ts_ms=None`` leaves the time out (the decoder must use the receive time).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from devices.fleet import Fleet
from devices.registry import Device
from devices.topics import device_topic
from kotaflow.wire.raw import PayloadFormat

Values = dict[str, Any]
BuildFleet = Callable[..., Fleet]
"""The ``build_fleet`` fixture: ``build_fleet(*registry_entries) -> Fleet``."""


def device_entry(**fields: Any) -> dict[str, Any]:
    """A registry entry with plausible defaults for what the test does not care about."""
    return {
        "name": f"test {fields['id']}",
        "kecamatan": "Langke Rembong",
        "latitude": -8.61,
        "longitude": 120.46,
        "elevation_m": 1170,
        "install_date": "2025-01-01",
        **fields,
    }


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _native_value(value: Any) -> Any:
    return {"v": value[0], "u": value[1]} if isinstance(value, tuple) else value


class PayloadBuilder(Protocol):
    format: PayloadFormat

    def topic(self, device: Device) -> str: ...

    def payload(self, device: Device, values: Values, ts_ms: int | None) -> bytes: ...


def _dumps(data: Any) -> bytes:
    return json.dumps(data).encode()  # allow_nan: NaN/Infinity tokens, as sloppy devices send


@dataclass(frozen=True)
class NativeJson:
    format: PayloadFormat = PayloadFormat.NATIVE_JSON

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.id)

    def payload(self, device: Device, values: Values, ts_ms: int | None) -> bytes:
        plain = {k: _native_value(v) for k, v in values.items()}
        return _dumps(plain if ts_ms is None else {"ts": ts_ms, "values": plain})


@dataclass(frozen=True)
class SenmlJson:
    format: PayloadFormat = PayloadFormat.SENML_JSON

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.id)

    def payload(self, device: Device, values: Values, ts_ms: int | None) -> bytes:
        records: list[dict[str, Any]] = []
        for name, value in values.items():
            record: dict[str, Any] = {"n": name}
            if isinstance(value, tuple):
                record["v"], record["u"] = value
            else:
                record["v"] = value
            records.append(record)
        head: dict[str, Any] = {"bn": f"{device.id}/"}
        if ts_ms is not None:
            head["bt"] = ts_ms / 1000
        records[0] = {**head, **records[0]}
        return _dumps(records)


@dataclass(frozen=True)
class ChirpstackV4:
    format: PayloadFormat = PayloadFormat.CHIRPSTACK_V4

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.id, device.dev_eui or "ffffffffffffffff")

    def payload(self, device: Device, values: Values, ts_ms: int | None) -> bytes:
        event: dict[str, Any] = {
            "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
            "deviceInfo": {
                "tenantName": "Manggarai",
                "applicationName": "kotaflow",
                "deviceName": device.name,
                "devEui": device.dev_eui or "ffffffffffffffff",
            },
            "fPort": 1,
            "data": "qg==",
            "object": {k: _native_value(v) for k, v in values.items()},
        }
        if ts_ms is not None:
            event["time"] = iso(ts_ms)
        return _dumps(event)


@dataclass(frozen=True)
class TtsV3:
    format: PayloadFormat = PayloadFormat.TTS_V3

    def topic(self, device: Device) -> str:
        return device_topic(self.format, device.ns_device_id)

    def payload(self, device: Device, values: Values, ts_ms: int | None) -> bytes:
        ids: dict[str, Any] = {
            "device_id": device.ns_device_id,
            "application_ids": {"application_id": "manggarai"},
        }
        if device.dev_eui:
            ids["dev_eui"] = device.dev_eui.upper()
        message: dict[str, Any] = {
            "end_device_ids": ids,
            "uplink_message": {
                "f_port": 1,
                "f_cnt": 42,
                "frm_payload": "gkHe",
                "decoded_payload": {k: _native_value(v) for k, v in values.items()},
            },
        }
        if ts_ms is not None:
            message["received_at"] = iso(ts_ms)
        return _dumps(message)


BUILDERS: tuple[PayloadBuilder, ...] = (NativeJson(), SenmlJson(), ChirpstackV4(), TtsV3())
