"""Dashboard languages: Bahasa Indonesia (the operators') and English.

Every title, label and legend passes through :class:`Text`, which holds both languages, so a
missing translation is a type error rather than a blank panel title.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Lang(StrEnum):
    ID = "id"
    EN = "en"

    @property
    def uid_suffix(self) -> str:
        """Dashboards in Indonesian keep the plain uid (links in alert messages use it)."""
        return "" if self is Lang.ID else f"-{self.value}"


@dataclass(frozen=True, slots=True)
class Text:
    id: str
    en: str

    def __call__(self, lang: Lang) -> str:
        return self.id if lang is Lang.ID else self.en

    def format(self, **values: object) -> Text:
        return Text(self.id.format(**values), self.en.format(**values))


FOLDER = Text("Kotaflow", "Kotaflow (English)")
ALERT_FOLDER = Text("Kotaflow - Peringatan", "Kotaflow - Alerts")
DEVICE = Text("Perangkat", "Device")
DEVICES = Text("Perangkat", "Devices")
NAME = Text("Nama", "Name")
TYPE = Text("Jenis", "Type")
KECAMATAN = Text("Kecamatan", "District (kecamatan)")
METRIC = Text("Besaran", "Metric")
VALUE = Text("Nilai", "Value")
UNIT = Text("Satuan", "Unit")
TIME = Text("Waktu", "Time")
LAST_SEEN = Text("Terakhir terlihat", "Last seen")
AGE = Text("Umur data", "Data age")
STATUS = Text("Status", "Status")
STATUS_OK = Text("Aktif", "Reporting")
STATUS_SILENT = Text("Senyap", "Silent")
STATUS_NEVER = Text("Belum pernah melapor", "Never reported")
ALL = Text("Semua", "All")
ON = Text("Menyala", "On")
OFF = Text("Mati", "Off")
