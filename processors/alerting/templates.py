"""Notification text in Bahasa Indonesia and English (pure).

Each receiver has a language. A message names the rule's title, the level, the device's
name and id, its kecamatan, the value against the threshold, the time in WITA
(Asia/Makassar, the regency's time zone) and a link to the device's dashboard. Indonesian
text writes decimals with a comma and times as ``14.05``, as Indonesian readers expect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from kotaflow.alerting_settings import Language
from kotaflow.wire.alerts import AlertEvent, Change, Severity

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
        "unacknowledged": "{title} berstatus {level} sejak {since} dan belum ada yang menangani.",
        "tag_resolved": "PULIH",
        "tag_reminder": "PENGINGAT",
        "tag_unacknowledged": "ESKALASI",
        "group": "{title}: {count} perangkat di Kecamatan {kecamatan}",
        "member": "- {name} ({device}): {value}, {level}",
        "ack": "Tangani: kotaflow alerts ack {alert_id}",
        "ack_link": "Tandai ditangani: {link}",
        "value": "Nilai: {value} (ambang {threshold})",
        "value_resolved": "Nilai: {value} (batas pulih {threshold})",
        "silent": "Tidak ada data sejak {last_seen} (batas {threshold})",
        "device": "Perangkat: {name} ({device}), Kecamatan {kecamatan}",
        "time": "Waktu: {time}",
        "severity": "Tingkat keparahan: {severity}",
        "link": "Dasbor: {link}",
        "minutes": "menit",
    },
    Language.EN: {
        "fired": "{title} reached {level}.",
        "escalated": "{title} rose from {previous} to {level}.",
        "deescalated": "{title} fell from {previous} to {level}.",
        "resolved": "{title} is back to normal (was {level}).",
        "reminder": "{title} is still at {level} since {started}.",
        "unacknowledged": "{title} has been at {level} since {since} and nobody has taken it.",
        "tag_resolved": "RESOLVED",
        "tag_reminder": "REMINDER",
        "tag_unacknowledged": "ESCALATION",
        "group": "{title}: {count} devices in kecamatan {kecamatan}",
        "member": "- {name} ({device}): {value}, {level}",
        "ack": "Acknowledge: kotaflow alerts ack {alert_id}",
        "ack_link": "Acknowledge: {link}",
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


_SEVERITY: dict[Language, dict[Severity, str]] = {
    Language.ID: {
        Severity.INFO: "informasi",
        Severity.WARNING: "peringatan",
        Severity.MAJOR: "serius",
        Severity.CRITICAL: "kritis",
    },
    Language.EN: {
        Severity.INFO: "info",
        Severity.WARNING: "warning",
        Severity.MAJOR: "major",
        Severity.CRITICAL: "critical",
    },
}

AckLink = Callable[[AlertEvent], str | None]
"""Event -> a signed acknowledge link for it (None: none configured)."""


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    text: str
    ack_url: str | None = None
    """A signed acknowledge link, for channels that can show a button (Telegram)."""


def severity_word(severity: Severity, language: Language) -> str:
    return _SEVERITY[language][severity]


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


def render(
    event: AlertEvent,
    language: Language,
    device_name: str,
    dashboard_url: str | None,
    ack_link: AckLink | None = None,
) -> Message:
    words = _WORDS[language]
    title = event.title.get(language.value) or event.rule
    headline = f"[{_tag(event, language)}] {title}: {device_name}, {event.kecamatan}"
    summary = words[event.change.value].format(
        title=title,
        level=event.level,
        previous=event.previous_level or "-",
        started=format_time(event.started_ms, language),
        since=format_time(event.at_ms, language),
    )
    lines = [
        summary,
        _value_line(event, language),
        words["severity"].format(severity=severity_word(event.severity, language)),
    ]
    lines.append(
        words["device"].format(name=device_name, device=event.device, kecamatan=event.kecamatan)
    )
    lines.append(words["time"].format(time=format_time(event.at_ms, language)))
    if dashboard_url:
        lines.append(words["link"].format(link=dashboard_url.format(device=event.device)))
    lines += _ack_lines(event, language, ack_link)
    ack_url = (
        ack_link(event) if ack_link is not None and event.change is not Change.RESOLVED else None
    )
    return Message(headline, "\n".join(lines), ack_url)


def render_group(
    events: Sequence[AlertEvent],
    language: Language,
    names: Mapping[str, str],
    dashboard_url: str | None,
    ack_link: AckLink | None = None,
) -> Message:
    """One message for a storm: fired alerts of one rule in one kecamatan, most severe first."""
    if len(events) == 1:
        first = events[0]
        return render(
            first, language, names.get(first.device, first.device), dashboard_url, ack_link
        )
    words = _WORDS[language]
    ordered = sorted(events, key=lambda e: (-list(Severity).index(e.severity), e.device))
    top = ordered[0]
    title = top.title.get(language.value) or top.rule
    count = len(ordered)
    headline = f"[{_tag(top, language)}] " + words["group"].format(
        title=title, count=count, kecamatan=top.kecamatan
    )
    lines = [
        words["member"].format(
            name=names.get(e.device, e.device),
            device=e.device,
            value=_amount(e.value, e, language),
            level=e.level,
        )
        for e in ordered
    ]
    lines.append(words["severity"].format(severity=severity_word(top.severity, language)))
    lines.append(words["time"].format(time=format_time(min(e.at_ms for e in ordered), language)))
    if dashboard_url:
        lines += [words["link"].format(link=dashboard_url.format(device=e.device)) for e in ordered]
    for event in ordered:
        lines += _ack_lines(event, language, ack_link)
    return Message(headline, "\n".join(lines))


def _tag(event: AlertEvent, language: Language) -> str:
    words = _WORDS[language]
    if event.change is Change.RESOLVED:
        return words["tag_resolved"]
    if event.change is Change.REMINDER:
        return f"{words['tag_reminder']} {event.level.upper()}"
    if event.change is Change.UNACKED:
        return f"{words['tag_unacknowledged']} {event.level.upper()}"
    return event.level.upper()


def _ack_lines(event: AlertEvent, language: Language, ack_link: AckLink | None) -> list[str]:
    if event.change is Change.RESOLVED:
        return []
    words = _WORDS[language]
    link = ack_link(event) if ack_link is not None else None
    if link:
        return [words["ack_link"].format(link=link)]
    return [words["ack"].format(alert_id=event.alert_id)]


def _amount(number: float | None, event: AlertEvent, language: Language) -> str:
    if number is None:
        return "-"
    return f"{format_number(number, language)} {event.unit}".rstrip()


def _value_line(event: AlertEvent, language: Language) -> str:
    words = _WORDS[language]
    if event.nodata:
        last = "-" if event.last_seen_ms is None else format_time(event.last_seen_ms, language)
        limit = "-" if event.threshold is None else format_number(event.threshold, language)
        return words["silent"].format(last_seen=last, threshold=f"{limit} {words['minutes']}")

    key = "value_resolved" if event.change is Change.RESOLVED else "value"
    return words[key].format(
        value=_amount(event.value, event, language),
        threshold=_amount(event.threshold, event, language),
    )
