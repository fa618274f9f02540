"""The records on ``kotaflow.readings``: validated, calibrated, enriched readings.

Version 2 (what validate writes): the readings of one device that share a time and flags,
usually one device message, in one record::

    {"v": 2, "device": "rtg-aq-01", "type": "air_quality", "kecamatan": "Langke Rembong",
     "units": {"pm25": "ug/m3", "pm10": "ug/m3", ...}, "ts_ms": 1764300000000,
     "flags": ["receive_time"], "values": {"pm25": 35.2, "pm10": 48.0}}

``values`` holds at least one metric, each at most once, as a finite number in the unit
``units`` names for it (``units`` lists every metric of the device's type). One record per
message instead of one per reading: validate, the brokers and every consumer handle 4-5
times fewer records, the stages' per-record cost.

Version 1 (one reading per record, written before version 2) is still read, so a topic
that holds both replays as it was::

    {"v": 1, "device": "rtg-aq-01", "type": "air_quality", "kecamatan": "Langke Rembong",
     "metric": "pm25", "unit": "ug/m3", "value": 35.2, "ts_ms": 1764300000000,
     "flags": ["receive_time"]}

Key: the device id, so one device's readings stay ordered on one partition. Consumers
(store, aggregate, alert) read these and nothing else, through :func:`record_of` (or
:func:`readings_of`, one tuple per reading).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

READING_VERSION = 2
"""The version validate writes."""
READ_VERSIONS = (1, 2)
"""The versions consumers read."""


class ValidReading(NamedTuple):
    """One reading of ``kotaflow.readings``. A ``NamedTuple``: store, aggregate and alert
    make one per reading, and it is built ~2.5x faster than a frozen dataclass."""

    device: str
    type: str
    kecamatan: str
    metric: str
    value: float
    unit: str
    ts_ms: int
    flags: tuple[str, ...] = ()

    def key(self) -> bytes:
        return self.device.encode()

    def value_bytes(self) -> bytes:
        """This reading alone as a version 2 record."""
        return readings_record(
            self.device,
            self.type,
            self.kecamatan,
            {self.metric: self.unit},
            self.ts_ms,
            self.flags,
            {self.metric: self.value},
        )


class ReadingsRecord(NamedTuple):
    """The readings of one record, as the record holds them: one tuple per record, not per
    reading. What store and aggregate iterate (a per-reading :class:`ValidReading` for each
    of a record's 4-5 metrics was a fifth of their CPU on a backlog); :meth:`readings` gives
    the per-reading form."""

    device: str
    type: str
    kecamatan: str
    units: dict[str, str]
    """The unit of (at least) every metric in ``values``."""
    ts_ms: int
    flags: tuple[str, ...]
    values: dict[str, float]
    """metric -> value, each metric once, at least one."""

    def reading(self, metric: str) -> ValidReading:
        return ValidReading(
            self.device,
            self.type,
            self.kecamatan,
            metric,
            self.values[metric],
            self.units[metric],
            self.ts_ms,
            self.flags,
        )

    def readings(self) -> list[ValidReading]:
        device, type_, kecamatan, units, ts_ms, flags, values = self
        return [
            ValidReading(device, type_, kecamatan, metric, value, units[metric], ts_ms, flags)
            for metric, value in values.items()
        ]


class RecordError(ValueError):
    """A record that is not a readings record of a version we read; the message says why."""

    def __init__(self, message: str, unsupported_version: bool = False) -> None:
        super().__init__(message)
        self.unsupported_version = unsupported_version


def readings_record(
    device: str,
    type_: str,
    kecamatan: str,
    units: Mapping[str, str],
    ts_ms: int,
    flags: tuple[str, ...],
    values: Mapping[str, float],
) -> bytes:
    """A version 2 record (the reference form; validate builds the same from parts)."""
    return record_head(device, type_, kecamatan, units) + record_rest(ts_ms, flags, values)


def record_head(device: str, type_: str, kecamatan: str, units: Mapping[str, str]) -> bytes:
    """The part of a version 2 record that is the same for every record of a device."""
    d = json.dumps
    return (
        f'{{"v":{READING_VERSION},"device":{d(device)},"type":{d(type_)},'
        f'"kecamatan":{d(kecamatan)},"units":{d(dict(units), separators=(",", ":"))},"ts_ms":'
    ).encode()


def flags_part(flags: tuple[str, ...]) -> bytes:
    """``,"flags":[..],"values":``: what follows the time."""
    return f',"flags":{json.dumps(list(flags))},"values":'.encode()


def record_rest(ts_ms: int, flags: tuple[str, ...], values: Mapping[str, float]) -> bytes:
    return str(ts_ms).encode() + flags_part(flags) + orjson.dumps(values) + b"}"


def readings_of(raw: bytes) -> list[ValidReading]:
    """The readings of a record value (version 1 or 2); raises :class:`RecordError`."""
    return record_of(raw).readings()


def record_of(raw: bytes) -> ReadingsRecord:
    """A record value (version 1 or 2) as one :class:`ReadingsRecord`; raises
    :class:`RecordError`.

    orjson: consumers parse every record, and it is ~3x faster than ``json.loads``.
    """
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise RecordError(f"not JSON: {err}") from None
    if not isinstance(d, dict):
        raise RecordError("not a JSON object")
    version = d.get("v")
    try:
        if version == 2:
            return _version_2(d)
        if version == 1:
            return _version_1(d)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RecordError(
            f"not a readings record v{version}: {type(err).__name__}: {err}"
        ) from None
    raise RecordError(
        f"reading record version {version!r} is not supported (reading {READ_VERSIONS})",
        unsupported_version=True,
    )


def _version_2(d: dict[str, Any]) -> ReadingsRecord:
    device, type_, kecamatan, units = d["device"], d["type"], d["kecamatan"], d["units"]
    values = d["values"]
    if not isinstance(values, dict) or not values:
        raise ValueError("values must be a non-empty {metric: number} object")
    ts_ms = int(d["ts_ms"])
    flags = tuple(d.get("flags") or ())
    floats = {metric: float(value) for metric, value in values.items()}
    if not units.keys() >= floats.keys():
        raise KeyError(next(m for m in floats if m not in units))
    return ReadingsRecord(device, type_, kecamatan, units, ts_ms, flags, floats)


def _version_1(d: dict[str, Any]) -> ReadingsRecord:
    metric, value, unit = d["metric"], float(d["value"]), d["unit"]
    return ReadingsRecord(
        d["device"],
        d["type"],
        d["kecamatan"],
        {metric: unit},
        int(d["ts_ms"]),
        tuple(d.get("flags") or ()),
        {metric: value},
    )
