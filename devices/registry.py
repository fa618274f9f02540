"""The device registry: every field device we accept data from, where it is, how to trust it.

``devices/registry.yaml`` (or ``settings.registry_file``) lists device instances: id, type
(from the catalogue), name, kecamatan, position, install date, per-metric calibration,
optional LoRaWAN DevEUI and The Things Stack device id, an ``enabled`` flag, and optional
``alert_levels`` (its own thresholds for an alert rule, checked by ``processors.alerting``)
and ``public`` (shown by ``kotaflow public`` or not; unset: its type decides).

Loading validates each device on its own (so one bad entry does not hide the others),
then checks what needs the whole file or the catalogue: unique ids, DevEUIs and TTS ids,
known types and kecamatan, calibration only for metrics the type has. Every problem names
file, line and field. The result is a :class:`Registry` with lookups built once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from devices.catalogue import Catalogue, FiniteFloat, Multiplier
from devices.sourcefile import (
    DeviceFileError,
    FieldPath,
    Problem,
    SourceFile,
    pydantic_problems,
    read_yaml,
)
from kotaflow.wire.raw import DeviceKeyKind

PACKAGED_REGISTRY = Path(__file__).with_name("registry.yaml")

DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
"""Lower-case, and a valid single MQTT topic segment (see ``devices.topics``)."""
TTS_ID_PATTERN = r"^[a-z0-9](?:-?[a-z0-9]){1,35}$"
"""The Things Stack end-device id rules: 2-36 of [a-z0-9-], no leading/trailing/double dash."""
_DEV_EUI = re.compile(r"^[0-9a-fA-F]{16}$")


class Calibration(BaseModel):
    """``calibrated = raw * scale + offset`` (applied by the validate stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offset: FiniteFloat = 0.0
    scale: Multiplier = 1.0


class Device(BaseModel):
    """One field device as the registry describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    type: str
    name: str = Field(min_length=1)
    kecamatan: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    elevation_m: float = Field(ge=-100, le=9000)
    install_date: date
    calibration: dict[str, Calibration] = {}
    dev_eui: str | None = None
    tts_device_id: str | None = Field(None, pattern=TTS_ID_PATTERN)
    enabled: bool = True
    alert_levels: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="alert rule -> this device's own levels (checked by the alert rules)",
    )
    public: bool | None = Field(
        None,
        description="published by `kotaflow public`; unset: environment and hazard types are",
    )

    @field_validator("dev_eui", mode="before")
    @classmethod
    def _dev_eui(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError("YAML read this DevEUI as a number: quote it")
        if isinstance(value, str):
            if not _DEV_EUI.match(value):
                raise ValueError("a DevEUI is exactly 16 hexadecimal digits")
            return value.lower()
        return value

    @property
    def ns_device_id(self) -> str:
        """The device's id on The Things Stack: ``tts_device_id``, else our own id."""
        return self.tts_device_id or self.id


_DEVICE = TypeAdapter(Device)


class RegistryHeader(BaseModel):
    """Everything in the registry file but the devices (validated one by one)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    regency: str = Field(min_length=1)
    kecamatan: list[str] = Field(
        default_factory=list, description="allowed kecamatan; empty allows any"
    )
    devices: list[Any]


@dataclass(frozen=True, slots=True)
class Registry:
    """All registered devices with lookups by id, DevEUI and network-server id."""

    regency: str
    devices: tuple[Device, ...]
    by_id: Mapping[str, Device]
    by_dev_eui: Mapping[str, Device]
    by_ns_id: Mapping[str, Device]
    source: str

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def get(self, device_id: str) -> Device | None:
        return self.by_id.get(device_id)

    def find(self, key: str, kind: DeviceKeyKind) -> Device | None:
        """The device a topic names (``key`` as ``devices.topics.match_topic`` gives it)."""
        if kind is DeviceKeyKind.DEVICE_ID:
            return self.by_id.get(key)
        if kind is DeviceKeyKind.DEV_EUI:
            return self.by_dev_eui.get(key.lower())
        return self.by_ns_id.get(key)


def load_registry(catalogue: Catalogue, path: Path | None = None) -> Registry:
    """Load and validate a registry (the packaged sample when ``path`` is None).

    Raises :class:`DeviceFileError` listing every problem with file and line.
    """
    source = read_yaml(path or PACKAGED_REGISTRY)
    registry, problems = check_registry(source, catalogue)
    if registry is None:
        raise DeviceFileError(problems)
    return registry


def check_registry(
    source: SourceFile, catalogue: Catalogue
) -> tuple[Registry | None, list[Problem]]:
    """Validate a parsed registry file: the registry if valid, and every problem found."""
    problems = source.duplicate_problems()
    try:
        header = RegistryHeader.model_validate(source.data)
    except ValidationError as err:
        return None, problems + pydantic_problems(source, err)
    devices: list[tuple[int, Device]] = []
    for index, raw in enumerate(header.devices):
        try:
            devices.append((index, _DEVICE.validate_python(raw)))
        except ValidationError as err:
            problems += pydantic_problems(source, err, ("devices", index))
    problems += _cross_check(source, header, devices, catalogue)
    if problems:
        return None, sorted(problems, key=lambda p: p.line)
    return _build(header.regency, [d for _, d in devices], str(source.path)), []


def _cross_check(
    source: SourceFile,
    header: RegistryHeader,
    devices: list[tuple[int, Device]],
    catalogue: Catalogue,
) -> list[Problem]:
    problems: list[Problem] = []
    allowed_kecamatan = set(header.kecamatan)
    first_id: dict[str, int] = {}
    first_eui: dict[str, int] = {}
    first_ns: dict[str, int] = {}

    def unique(seen: dict[str, int], value: str, index: int, path: FieldPath, what: str) -> None:
        if value in seen:
            problems.append(
                source.problem(
                    path,
                    f"duplicate {what} {value!r} (first used by devices[{seen[value]}], "
                    f"line {source.line_of(('devices', seen[value]))})",
                )
            )
        else:
            seen[value] = index

    for index, device in devices:
        at: FieldPath = ("devices", index)
        id_taken = device.id in first_id
        unique(first_id, device.id, index, (*at, "id"), "device id")
        if device.dev_eui is not None:
            unique(first_eui, device.dev_eui, index, (*at, "dev_eui"), "DevEUI")
        if device.tts_device_id is not None:
            unique(first_ns, device.tts_device_id, index, (*at, "tts_device_id"), "TTS device id")
        elif not id_taken:  # its TTS id is its id: say so once, not twice
            unique(first_ns, device.id, index, (*at, "id"), "TTS device id")
        if allowed_kecamatan and device.kecamatan not in allowed_kecamatan:
            problems.append(
                source.problem(
                    (*at, "kecamatan"),
                    f"unknown kecamatan {device.kecamatan!r} (not in the kecamatan: list)",
                )
            )
        device_type = catalogue.types.get(device.type)
        if device_type is None:
            known = ", ".join(sorted(catalogue.types))
            problems.append(
                source.problem(
                    (*at, "type"), f"unknown device type {device.type!r} (known: {known})"
                )
            )
            continue
        for metric in device.calibration:
            if metric not in device_type.metrics:
                reason = f"type {device.type!r} has no metric {metric!r}"
            elif device_type.metrics[metric].boolean:
                reason = f"{metric!r} is an on/off metric and cannot be calibrated"
            else:
                continue
            problems.append(source.problem((*at, "calibration", metric), reason))
    return problems


def _build(regency: str, devices: list[Device], source: str) -> Registry:
    return Registry(
        regency=regency,
        devices=tuple(devices),
        by_id=MappingProxyType({d.id: d for d in devices}),
        by_dev_eui=MappingProxyType({d.dev_eui: d for d in devices if d.dev_eui}),
        by_ns_id=MappingProxyType({d.ns_device_id: d for d in devices}),
        source=source,
    )
