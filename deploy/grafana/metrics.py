"""How a catalogue metric is shown: its name in both languages and its Grafana unit.

Names for the catalogue's metrics are listed here; a metric added to the catalogue later
falls back to its catalogue description (and a test lists any metric without a name, so a
translation gets added). Units map the catalogue's SenML names to Grafana's unit ids; an
unknown unit is shown as a plain suffix.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from grafana_foundation_sdk.models import units

from deploy.grafana.i18n import Text
from devices.catalogue import Metric

NAMES: Mapping[str, Text] = MappingProxyType(
    {
        "pm25": Text("PM2.5", "PM2.5"),
        "pm10": Text("PM10", "PM10"),
        "co2": Text("Karbon dioksida (CO₂)", "Carbon dioxide (CO₂)"),
        "no2": Text("Nitrogen dioksida (NO₂)", "Nitrogen dioxide (NO₂)"),
        "o3": Text("Ozon (O₃)", "Ozone (O₃)"),
        "co": Text("Karbon monoksida (CO)", "Carbon monoxide (CO)"),
        "temperature": Text("Suhu udara", "Air temperature"),
        "humidity": Text("Kelembapan relatif", "Relative humidity"),
        "pressure": Text("Tekanan udara", "Air pressure"),
        "wind_speed": Text("Kecepatan angin", "Wind speed"),
        "wind_direction": Text("Arah angin", "Wind direction"),
        "rain": Text("Curah hujan", "Rainfall"),
        "rain_rate": Text("Intensitas hujan", "Rain intensity"),
        "water_level": Text("Tinggi muka air", "Water level"),
        "river_flow": Text("Debit sungai", "River discharge"),
        "laeq": Text("Tingkat kebisingan (LAeq)", "Noise level (LAeq)"),
        "lamax": Text("Kebisingan maksimum (LAmax)", "Maximum noise (LAmax)"),
        "flow": Text("Debit air", "Water flow"),
        "water_pressure": Text("Tekanan air", "Water pressure"),
        "volume": Text("Volume kumulatif", "Cumulative volume"),
        "power": Text("Daya aktif", "Active power"),
        "energy": Text("Energi kumulatif", "Cumulative energy"),
        "voltage": Text("Tegangan", "Voltage"),
        "current": Text("Arus", "Current"),
        "lamp_on": Text("Lampu menyala", "Lamp on"),
        "battery": Text("Tegangan baterai", "Battery voltage"),
        "queue_messages": Text("Antrean (pesan)", "Queue (messages)"),
        "queue_bytes": Text("Antrean (byte)", "Queue (bytes)"),
        "oldest_age": Text("Umur pesan tertua", "Oldest message age"),
        "budget_used": Text("Anggaran antrean terpakai", "Queue budget used"),
        "link_uptime": Text("Tautan ke pusat tersambung", "Central link up"),
        "link_drops": Text("Tautan terputus", "Link drops"),
        "forward_rate": Text("Laju kirim ke pusat", "Forward rate"),
        "receive_rate": Text("Laju terima dari perangkat", "Receive rate"),
        "refused": Text("Pesan ditolak pusat", "Refused by the central broker"),
    }
)

GRAFANA_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "Cel": units.Celsius,
        "%RH": units.Humidity,
        "hPa": units.Hectopascals,
        "m/s": units.MetersPerSecond,
        "deg": units.Degrees,
        "mm": units.Millimeter,
        "m3/s": units.CubicMetersPerSecond,
        "ug/m3": units.MicrogramPerCubicMeter,
        "ppm": units.PartsPerMillion,
        "bar": units.Bars,
        "W": units.Watt,
        "kWh": units.KiloWattHour,
        "V": units.Volt,
        "A": units.Ampere,
        "": units.NoUnit,
        "count": units.Short,
        "B": units.BytesIEC,
        "s": units.DurationSeconds,
        "%": units.Percent,
        "1/s": units.MessagesPerSecond,
    }
)
SHOWN_AS = MappingProxyType({"dBA": "dB(A)", "m3": "m³", "ug/m3": "µg/m³", "Cel": "°C"})
"""How a catalogue unit is written in text (panel descriptions, tables)."""


def name(metric: Metric) -> Text:
    return NAMES.get(metric.name) or Text(metric.description, metric.description)


def grafana_unit(unit: str) -> str:
    """Grafana's unit id for a catalogue unit, else ``suffix: <unit>``."""
    return GRAFANA_UNITS.get(unit) or f"suffix: {SHOWN_AS.get(unit, unit)}"


def shown(unit: str) -> str:
    return SHOWN_AS.get(unit, unit)
