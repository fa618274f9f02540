"""Adding devices to the registry file: validated, comments and order kept, all or nothing
per device (``kotaflow devices add`` and ``devices import``).

The registry is edited as a round-trip YAML document (ruamel.yaml: it keeps comments, key
order, quoting and flow style, which PyYAML drops), so an operator's file stays theirs.
Each new device is appended and the whole candidate file is validated the way every
consumer loads it (``devices.registry.load_registry``, against the catalogue) before it is
kept; a device that would make the file invalid is refused with the reasons and leaves no
trace. The file is replaced atomically once, at the end, and only if something was added.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from devices.catalogue import Catalogue
from devices.registry import Device, Registry, load_registry
from devices.sourcefile import DeviceFileError
from devices.topics import device_topic
from kotaflow.mqtt import local_ca_file
from kotaflow.settings import Settings
from kotaflow.wire.raw import PayloadFormat

FIELD_ORDER = (
    "id",
    "type",
    "name",
    "kecamatan",
    "latitude",
    "longitude",
    "elevation_m",
    "install_date",
    "calibration",
    "dev_eui",
    "tts_device_id",
    "enabled",
)
"""The order of an entry's keys, as in the packaged registry."""


class Outcome(StrEnum):
    ADDED = "added"
    UNCHANGED = "unchanged"
    """The registry already has this device with the same fields."""
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RowResult:
    row: int
    """1-based position in the input (the CSV's data rows, the JSON list)."""
    device: str
    outcome: Outcome
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "device": self.device,
            "result": self.outcome.value,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Onboarding:
    """What adding a batch gives: one result per row, and the registry now in the file."""

    results: list[RowResult]
    registry: Registry
    text: str

    @property
    def added(self) -> list[str]:
        return [r.device for r in self.results if r.outcome is Outcome.ADDED]


def rows_of(path: Path) -> list[dict[str, Any]]:
    """Device rows from a ``.csv`` (header row with field names) or a ``.json`` list.

    Empty CSV cells are left out (the field's default applies); ``calibration`` in a CSV is
    JSON text (``{"pm25": {"offset": -1.2}}``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path}: expected a JSON list of device objects")
        return data
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: expected a .csv or .json file")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        clean: dict[str, Any] = {k.strip(): v.strip() for k, v in row.items() if k and v}
        if "calibration" in clean:
            with contextlib.suppress(ValueError):  # else validation says what is wrong
                clean["calibration"] = json.loads(clean["calibration"])
        rows.append(clean)
    return rows


def add_devices(path: Path, catalogue: Catalogue, rows: Iterable[Mapping[str, Any]]) -> Onboarding:
    """Append the valid new devices of ``rows`` to the registry at ``path`` (in memory):
    every row gets a result; nothing is written (see :func:`save`)."""
    registry = load_registry(catalogue, path)  # first: a missing or bad file says so
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8"))
    devices = document.get("devices")
    if devices is None:
        devices = document["devices"] = []
    text = _dump(yaml, document)
    results = []
    for number, row in enumerate(rows, start=1):
        name = str(row.get("id", "") or f"(row {number})")
        try:
            device = Device.model_validate(_coerced(row))
        except ValidationError as err:
            results.append(RowResult(number, name, Outcome.ERROR, _pydantic_reason(err)))
            continue
        existing = registry.get(device.id)
        if existing is not None:
            if existing == device:
                results.append(RowResult(number, device.id, Outcome.UNCHANGED))
            else:
                why = "a different device with this id is registered (edit the file to change it)"
                results.append(RowResult(number, device.id, Outcome.ERROR, why))
            continue
        devices.append(entry_of(device))
        candidate = _dump(yaml, document)
        try:
            registry = _validated(path, catalogue, candidate)
        except DeviceFileError as err:
            devices.pop()
            results.append(RowResult(number, device.id, Outcome.ERROR, _file_reason(err)))
            continue
        text = candidate
        results.append(RowResult(number, device.id, Outcome.ADDED))
    return Onboarding(results, registry, text)


def save(path: Path, text: str) -> None:
    """Replace the registry file with ``text`` atomically (same directory, same mode)."""
    mode = path.stat().st_mode & 0o777
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entry_of(device: Device) -> CommentedMap:
    """The registry entry of ``device``: fields in the file's order, defaults left out,
    names and DevEUIs quoted (a DevEUI of digits would otherwise read back as a number)."""
    data = device.model_dump(exclude_defaults=True)
    data["id"], data["type"] = device.id, device.type
    entry = CommentedMap()
    for key in FIELD_ORDER:
        if key not in data:
            continue
        value = data[key]
        if key in ("name", "dev_eui"):
            value = DoubleQuotedScalarString(value)
        elif key == "calibration":
            value = {metric: dict(c) for metric, c in value.items()}
        entry[key] = value
    return entry


def _coerced(row: Mapping[str, Any]) -> dict[str, Any]:
    """Strings from a CSV or the command line as the model wants them (``enabled``)."""
    out = dict(row)
    enabled = out.get("enabled")
    if isinstance(enabled, str):
        out["enabled"] = enabled.strip().lower() not in ("no", "false", "0", "off")
    return out


def _validated(path: Path, catalogue: Catalogue, text: str) -> Registry:
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.check.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        return load_registry(catalogue, Path(tmp))
    finally:
        Path(tmp).unlink(missing_ok=True)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap an operator's long lines
    return yaml


def _dump(yaml: YAML, document: Any) -> str:
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _pydantic_reason(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(entry)'}: {e['msg']}" for e in err.errors()
    )


def _file_reason(err: DeviceFileError) -> str:
    """The problems with the candidate file, without the temporary file's name."""
    return "; ".join(f"{p.field}: {p.reason}" for p in err.problems)


def connection_settings(
    settings: Settings, catalogue: Catalogue, device: Device, password: str | None
) -> dict[str, Any]:
    """What a device needs to publish: broker, TLS CA, account, topics, an example."""
    ca_file = settings.mqtt.ca_file or local_ca_file(settings.stack.state_dir)
    metrics = catalogue.types[device.type].metrics
    example = {
        "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "values": {
            name: 1 if m.boolean else round((m.minimum + m.maximum) / 2, 1)
            for name, m in metrics.items()
        },
    }
    return {
        "device": device.id,
        "host": settings.mqtt.host,
        "port": settings.mqtt.port,
        "tls_port": settings.mqtt.tls_port,
        "tls_ca_file": str(ca_file) if Path(ca_file).is_file() else None,
        "user": device.id,
        "password": password,
        "topics": {
            "native_json": device_topic(PayloadFormat.NATIVE_JSON, device.id),
            "senml_json": device_topic(PayloadFormat.SENML_JSON, device.id),
        },
        "qos": 1,
        "units": {name: m.unit for name, m in metrics.items()},
        "example_payload": example,
    }
