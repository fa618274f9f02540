"""Notification text in Bahasa Indonesia and English (pure).

Each receiver has a language. A message names the rule's title, the level, the device's
name and id, its kecamatan, the value against the threshold, the time in WITA
(Asia/Makassar, the regency's time zone) and a link to the device's dashboard. Indonesian
text writes decimals with a comma and times as ``14.05``, as Indonesian readers expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from kotaflow.alerting_settings import Language
from kotaflow.wire.alerts import AlertEvent, Change

WITA = ZoneInfo("Asia/Makassar")

_MONTHS = {
    Language.ID: [
        "Januari",
        "Februari",
        "Maret",
        "April",
        "Mei",
        "Juni",
        "Juli",
        "Agustus",
        "September",
        "Oktober",
        "November",
        "Desember",
    ],
    Language.EN: [
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
        "Dec",
    ],
}

_WORDS: dict[Language, dict[str, str]] = {
    Language.ID: {
        "fired": "{title} mencapai status {level}.",
        "escalated": "{title} naik dari {previous} ke {level}.",
        "deescalated": "{title} turun dari {previous} ke {level}.",
        "resolved": "{title} kembali normal (sebelumnya {level}).",
        "reminder": "{title} masih berstatus {level} sejak {started}.",
        "tag_resolved": "PULIH",
        "tag_reminder": "PENGINGAT",
        "value": "Nilai: {value} (ambang {threshold})",
        "value_resolved": "Nilai: {value} (batas pulih {threshold})",
        "silent": "Tidak ada data sejak {last_seen} (batas {threshold})",
        "device": "Perangkat: {name} ({device}), Kecamatan {kecamatan}",
        "time": "Waktu: {time}",
        "severity": "Tingkat: {severity}",
        "link": "Dasbor: {link}",
        "minutes": "menit",
    },
    Language.EN: {
        "fired": "{title} reached {level}.",
        "escalated": "{title} rose from {previous} to {level}.",
        "deescalated": "{title} fell from {previous} to {level}.",
        "resolved": "{title} is back to normal (was {level}).",
        "reminder": "{title} is still at {level} since {started}.",
        "tag_resolved": "RESOLVED",
        "tag_reminder": "REMINDER",
        "value": "Value: {value} (threshold {threshold})",
        "value_resolved": "Value: {value} (clears at {threshold})",
        "silent": "No data since {last_seen} (limit {threshold})",
        "device": "Device: {name} ({device}), kecamatan {kecamatan}",
        "time": "Time: {time}",
        "severity": "Severity: {severity}",
        "link": "Dashboard: {link}",
        "minutes": "min",
    },
}


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    text: str


def format_time(ts_ms: int, language: Language) -> str:
    """``28 November 2026 14.05 WITA`` / ``28 Nov 2026 14:05 WITA``."""
    moment = datetime.fromtimestamp(ts_ms / 1000, WITA)
    month = _MONTHS[language][moment.month - 1]
    sep = "." if language is Language.ID else ":"
    return f"{moment.day} {month} {moment.year} {moment:%H}{sep}{moment:%M} WITA"


def format_number(value: float, language: Language) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    return text.replace(".", ",") if language is Language.ID else text


def render(event: AlertEvent, language: Language, device_name: str, dashboard_url: str) -> Message:
    words = _WORDS[language]
    title = event.title.get(language.value) or event.rule
    if event.change is Change.RESOLVED:
        tag = words["tag_resolved"]
    elif event.change is Change.REMINDER:
        tag = f"{words['tag_reminder']} {event.level.upper()}"
    else:
        tag = event.level.upper()
    headline = f"[{tag}] {title}: {device_name}, {event.kecamatan}"
    summary = words[event.change.value].format(
        title=title,
        level=event.level,
        previous=event.previous_level or "-",
        started=format_time(event.started_ms, language),
    )
    lines = [
        summary,
        _value_line(event, language),
        words["severity"].format(severity=event.severity.value),
    ]
    lines.append(
        words["device"].format(name=device_name, device=event.device, kecamatan=event.kecamatan)
    )
    lines.append(words["time"].format(time=format_time(event.at_ms, language)))
    link = dashboard_url.format(device=event.device)
    lines.append(words["link"].format(link=link))
    return Message(headline, "\n".join(lines))


def _value_line(event: AlertEvent, language: Language) -> str:
    words = _WORDS[language]
    if event.nodata:
        last = "-" if event.last_seen_ms is None else format_time(event.last_seen_ms, language)
        limit = "-" if event.threshold is None else format_number(event.threshold, language)
        return words["silent"].format(last_seen=last, threshold=f"{limit} {words['minutes']}")

    def amount(number: float | None) -> str:
        if number is None:
            return "-"
        return f"{format_number(number, language)} {event.unit}".rstrip()

    key = "value_resolved" if event.change is Change.RESOLVED else "value"
    return words[key].format(value=amount(event.value), threshold=amount(event.threshold))
