"""Words, units and times as residents read them, in Bahasa Indonesia and English."""

from __future__ import annotations

import re
from datetime import datetime
from types import MappingProxyType

from deploy.grafana.i18n import Lang, Text
from processors.alerting.templates import WITA

UNITS = MappingProxyType(
    {"ug/m3": "µg/m³", "Cel": "°C", "%RH": "%", "dBA": "dB(A)", "m3/s": "m³/s"}
)
METRICS = MappingProxyType(
    {
        "pm25": Text("PM2.5", "PM2.5"),
        "pm10": Text("PM10", "PM10"),
        "co2": Text("CO₂", "CO₂"),
        "no2": Text("NO₂", "NO₂"),
        "o3": Text("O₃", "O₃"),
        "co": Text("CO", "CO"),
        "temperature": Text("Suhu", "Temperature"),
        "humidity": Text("Kelembapan", "Humidity"),
        "pressure": Text("Tekanan udara", "Air pressure"),
        "wind_speed": Text("Kecepatan angin", "Wind speed"),
        "wind_direction": Text("Arah angin", "Wind direction"),
        "rain": Text("Hujan", "Rain"),
        "rain_rate": Text("Intensitas hujan", "Rain rate"),
        "water_level": Text("Tinggi muka air", "Water level"),
        "river_flow": Text("Debit sungai", "River flow"),
        "laeq": Text("Kebisingan LAeq", "Noise LAeq"),
        "lamax": Text("Kebisingan LAmax", "Noise LAmax"),
    }
)
SECTIONS = MappingProxyType(
    {
        "river_level": Text("Tinggi muka air sungai", "River levels"),
        "rain_gauge": Text("Hujan hari ini (BMKG)", "Rain today (BMKG)"),
        "air_quality": Text("Kualitas udara (ISPU)", "Air quality (ISPU)"),
        "weather": Text("Cuaca", "Weather"),
        "noise": Text("Kebisingan", "Noise"),
    }
)
"""Page sections in the order a resident in a flood needs them: hazards first."""
SHOWN = MappingProxyType(
    {
        "air_quality": ("pm25", "pm10"),
        "rain_gauge": ("rain_rate",),
        "weather": ("temperature", "humidity", "rain_rate"),
        "river_level": ("water_level",),
        "noise": ("laeq",),
    }
)
"""The values a page line shows per device type (the API has them all)."""
GLOSS = MappingProxyType(
    {
        "Waspada": "Waspada (alert)",
        "Siaga": "Siaga (standby)",
        "Awas": "Awas (danger)",
        "Normal": "Normal",
    }
)
"""English for the BPBD status words, which stay Indonesian on the English page too."""

REGENCY = Text("Kabupaten {name}", "{name} Regency")
TAGLINE = Text("Status lingkungan dan bencana", "Environment and hazard status")
UPDATED = Text("Diperbarui {time}", "Updated {time}")
STALE = Text(
    "Data dari {time}: sumber data sedang tidak terjangkau.",
    "Data from {time}: the data source cannot be reached right now.",
)
NO_DATA_YET = Text(
    "Belum ada data: layanan baru dimulai.", "No data yet: the service just started."
)
NO_DATA_SINCE = Text("Tidak ada data sejak {time}", "No data since {time}")
NO_DATA = Text("Tidak ada data", "No data")
WARNINGS = Text("Peringatan aktif", "Active warnings")
NO_WARNINGS = Text("Tidak ada peringatan aktif.", "No active warnings.")
WARNING_SINCE = Text("sejak {time}", "since {time}")
RAIN_TODAY = Text("Hujan hari ini", "Rain today")
KECAMATAN = Text("Kecamatan", "Districts (kecamatan)")
ALL = Text("Seluruh kabupaten", "Whole regency")
OPEN_DATA = Text("Data terbuka", "Open data")
LICENCE_NOTE = Text(
    "Data dapat dipakai ulang dengan lisensi CC BY 4.0.",
    "Data may be reused under the CC BY 4.0 licence.",
)
OTHER_LANG = Text("English", "Bahasa Indonesia")
DISCLAIMER = Text(
    "Nilai terbaru dari sensor otomatis, belum divalidasi. Ikuti arahan BPBD.",
    "Latest values from automatic sensors, not validated. Follow BPBD instructions.",
)


def lang_of(query: str | None) -> Lang:
    return Lang.EN if query == "en" else Lang.ID


def slug(kecamatan: str) -> str:
    """``Langke Rembong`` -> ``langke-rembong`` (the kecamatan page's path)."""
    return re.sub(r"[^a-z0-9]+", "-", kecamatan.lower()).strip("-")


def unit(name: str) -> str:
    return UNITS.get(name, name)


def number(value: float, lang: Lang) -> str:
    """One decimal at most; a decimal comma in Indonesian."""
    text = f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    return text.replace(".", ",") if lang is Lang.ID else text


def clock(moment: datetime, now: datetime, lang: Lang) -> str:
    """``14.05 WITA`` (``14:05`` in English), with the date when not today."""
    local, today = moment.astimezone(WITA), now.astimezone(WITA).date()
    text = local.strftime("%H.%M" if lang is Lang.ID else "%H:%M") + " WITA"
    return text if local.date() == today else local.strftime("%d/%m/%Y ") + text


def level_word(label: Text, lang: Lang) -> str:
    word = label(lang)
    return GLOSS.get(word, word) if lang is Lang.EN else word
