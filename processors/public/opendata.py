"""The open-data API's bodies: current values (JSON, CSV), rollups, the data dictionary, the
licence, and FIWARE Smart Data Models (key-values form) for air, weather and water.

Pure functions of a :class:`Snapshot` (and the public devices), so a test checks exactly
what a visitor gets. Nothing here names accounts, tokens or internal ids beyond the public
device id.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from processors.public.publicity import PublicDevice
from processors.public.snapshot import DeviceState, Snapshot

LICENCE = MappingProxyType(
    {
        "name": "Creative Commons Attribution 4.0 International (CC BY 4.0)",
        "id": "CC-BY-4.0",
        "url": "https://creativecommons.org/licenses/by/4.0/",
        "attribution": "Pemerintah Kabupaten {regency} (kotaflow)",
        "note": "Raw values from automatic sensors, calibrated but not manually validated.",
    }
)
CSV_COLUMNS = (
    "device",
    "name",
    "type",
    "kecamatan",
    "latitude",
    "longitude",
    "metric",
    "value",
    "unit",
    "time",
)
METHODS = MappingProxyType(
    {
        "air_quality": "optical particle counter (PM), NDIR (CO2), electrochemical (gases)",
        "weather": "automatic weather station",
        "rain_gauge": "tipping-bucket rain gauge",
        "river_level": "radar level sensor above the river, cm above the gauge datum",
        "noise": "class 2 sound level meter",
    }
)
FIWARE_TYPES = MappingProxyType(
    {
        "AirQualityObserved": ("air_quality",),
        "WeatherObserved": ("weather", "rain_gauge"),
        "WaterObserved": ("river_level",),
    }
)
_FIWARE_ATTRIBUTES = MappingProxyType(
    {
        # our metric -> (FIWARE attribute, factor into the model's unit)
        "pm25": ("pm25", 1.0),
        "pm10": ("pm10", 1.0),
        "no2": ("no2", 1.0),
        "o3": ("o3", 1.0),
        "co": ("co", 1.0),
        "co2": ("co2", 1.0),
        "temperature": ("temperature", 1.0),
        "humidity": ("relativeHumidity", 0.01),  # the models use a 0..1 ratio
        "pressure": ("atmosphericPressure", 1.0),
        "wind_speed": ("windSpeed", 1.0),
        "wind_direction": ("windDirection", 1.0),
        "water_level": ("height", 0.01),  # WaterObserved: metres
        "river_flow": ("flow", 1.0),
    }
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _status(state: DeviceState) -> dict[str, str] | None:
    if state.verdict is None:
        return None
    return {
        "id": state.verdict.label.id,
        "en": state.verdict.label.en,
        "colour": state.verdict.colour,
        "basis": state.verdict.basis.en,
    }


def current(snapshot: Snapshot, *, stale: bool) -> dict[str, Any]:
    """Every public device with its latest values, status and silence."""
    return {
        "regency": snapshot.regency,
        "data_time": _iso(snapshot.data_at),
        "stale": stale,
        "licence": licence(snapshot.regency),
        "warnings": [
            {
                "rule": a.rule,
                "title": {"id": a.title.id, "en": a.title.en},
                "level": a.level,
                "device": a.device.id,
                "kecamatan": a.device.kecamatan,
                "since": _iso(a.since),
            }
            for a in snapshot.warnings
        ],
        "devices": [
            {
                "device": s.device.id,
                "name": s.device.name,
                "type": s.device.type,
                "kecamatan": s.device.kecamatan,
                "latitude": s.device.latitude,
                "longitude": s.device.longitude,
                "last_seen": _iso(s.last_seen) if s.last_seen else None,
                "silent": s.silent,
                "status": _status(s),
                "rain_today_mm": s.rain_today_mm,
                "values": {
                    r.metric: {"value": r.value, "unit": r.unit, "time": _iso(r.at)}
                    for r in s.readings
                },
            }
            for s in snapshot.devices
        ],
    }


def _csv(rows: Iterable[Iterable[Any]], header: Iterable[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def current_csv(snapshot: Snapshot) -> str:
    """One row per device and metric (long form: every spreadsheet reads it)."""
    rows = (
        (
            s.device.id,
            s.device.name,
            s.device.type,
            s.device.kecamatan,
            s.device.latitude,
            s.device.longitude,
            r.metric,
            repr(r.value),
            r.unit,
            _iso(r.at),
        )
        for s in snapshot.devices
        for r in s.readings
    )
    return _csv(rows, CSV_COLUMNS)


ROLLUP_FIELDS = ("time", "count", "mean", "min", "max", "sum", "last")


def rollups(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :func:`processors.public.queries.rollups_flux` as plain records."""
    out = []
    for row in rows:
        record: dict[str, Any] = {"time": _iso(row["_time"])}
        for name in ROLLUP_FIELDS[1:]:
            value = row.get(name)
            record[name] = int(value) if name == "count" and value is not None else value
        out.append(record)
    return out


def rollups_csv(records: Iterable[Mapping[str, Any]]) -> str:
    return _csv(([r.get(c) for c in ROLLUP_FIELDS] for r in records), ROLLUP_FIELDS)


def licence(regency: str) -> dict[str, str]:
    return {k: v.format(regency=regency) for k, v in LICENCE.items()}


def dictionary(devices: Iterable[PublicDevice], regency: str) -> dict[str, Any]:
    """Units and meaning of every public metric, and every public device's place."""
    chosen = list(devices)
    metrics = {m.name: m for p in chosen for m in p.metrics.values()}
    return {
        "licence": licence(regency),
        "time_zone": "timestamps are UTC (RFC 3339); pages show WITA (Asia/Makassar, UTC+8)",
        "metrics": {
            name: {
                "unit": m.unit,
                "description": m.description,
                "valid_min": m.minimum,
                "valid_max": m.maximum,
            }
            for name, m in sorted(metrics.items())
        },
        "device_types": {
            t: {"method": METHODS.get(t, ""), "metrics": sorted(p.metrics)}
            for p in chosen
            for t in [p.device.type]
        },
        "devices": [
            {
                "device": p.device.id,
                "name": p.device.name,
                "type": p.device.type,
                "kecamatan": p.device.kecamatan,
                "latitude": p.device.latitude,
                "longitude": p.device.longitude,
                "elevation_m": p.device.elevation_m,
                "install_date": p.device.install_date.isoformat(),
            }
            for p in chosen
        ],
        "rollups": "window 1h (last 7 days) and 1d (last 90 days): count, mean, min, max, "
        "sum, last of the calibrated readings; time = start of the window",
    }


def fiware(snapshot: Snapshot, model: str) -> list[dict[str, Any]]:
    """The ``model`` entities (NGSI-LD key-values) of the public devices that have data."""
    types = FIWARE_TYPES[model]
    entities = []
    for state in snapshot.devices:
        if state.device.type not in types or not state.readings:
            continue
        device = state.device
        entity: dict[str, Any] = {
            "id": f"urn:ngsi-ld:{model}:{device.id}",
            "type": model,
            "name": device.name,
            "dateObserved": _iso(max(r.at for r in state.readings)),
            "location": {"type": "Point", "coordinates": [device.longitude, device.latitude]},
            "address": {
                "addressLocality": device.kecamatan,
                "addressRegion": f"Kabupaten {snapshot.regency}",
                "addressCountry": "ID",
            },
            "refDevice": f"urn:ngsi-ld:Device:{device.id}",
            "dataProvider": licence(snapshot.regency)["attribution"],
        }
        for reading in state.readings:
            attribute = _FIWARE_ATTRIBUTES.get(reading.metric)
            if attribute is not None:
                entity[attribute[0]] = reading.value * attribute[1]
        if state.rain_today_mm is not None and model == "WeatherObserved":
            entity["precipitation"] = state.rain_today_mm  # mm (l/m2) since midnight WITA
        if state.verdict is not None and model == "AirQualityObserved":
            entity["airQualityLevel"] = state.verdict.label.id
        entities.append(entity)
    return entities
