"""Server-rendered status pages: plain HTML with inline CSS, no JavaScript, no images.

Made for a cheap phone on a weak link: one request, a few kB gzipped, a single column that
reads on a 360-px screen. Each status is a word and a colour (never the colour alone).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from types import MappingProxyType

from deploy.grafana.i18n import Lang, Text
from processors.public import wording as w
from processors.public.snapshot import ActiveWarning, DeviceState, Snapshot

COLOURS = MappingProxyType(
    {
        "green": "#2e7d32",
        "blue": "#1565c0",
        "yellow": "#f9a825",
        "orange": "#ef6c00",
        "red": "#c62828",
        "purple": "#4a148c",
        "transparent": "#78909c",
    }
)
DARK_TEXT = frozenset({"yellow"})
CSS = (
    "body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;max-width:40em;padding:0 .6em;"
    "color:#212121}h1{font-size:1.3em;margin:.5em 0 0}h2{font-size:1.1em;margin:1em 0 .3em;"
    "border-bottom:1px solid #ccc}ul{list-style:none;padding:0;margin:0}li{padding:.35em 0;"
    "border-bottom:1px solid #eee}.s{display:inline-block;padding:0 .4em;border-radius:.3em;"
    "color:#fff;font-weight:600}.d{color:#555;font-size:.9em}.w{background:#fff3cd;"
    "padding:.5em;border:1px solid #e0a800}nav a{margin-right:.8em}small{color:#555}"
)


def _badge(state: DeviceState, lang: Lang) -> str:
    if state.silent or state.verdict is None:
        return f'<span class="s" style="background:#9e9e9e">{escape(w.NO_DATA(lang))}</span>'
    colour = state.verdict.colour
    text_colour = ";color:#000" if colour in DARK_TEXT else ""
    return (
        f'<span class="s" style="background:{COLOURS.get(colour, colour)}{text_colour}">'
        f"{escape(w.level_word(state.verdict.label, lang))}</span>"
    )


def _details(state: DeviceState, now: datetime, lang: Lang) -> str:
    if state.silent:
        if state.last_seen is None:
            return ""  # the badge says it
        return escape(w.NO_DATA_SINCE(lang).format(time=w.clock(state.last_seen, now, lang)))
    parts = []
    if state.rain_today_mm is not None:
        parts.append(f"{w.RAIN_TODAY(lang)} {w.number(state.rain_today_mm, lang)} mm")
    for metric in w.SHOWN.get(state.device.type, ()):
        reading = state.reading(metric)
        if reading is not None:
            name = w.METRICS.get(metric, Text(metric, metric))(lang)
            parts.append(f"{name} {w.number(reading.value, lang)} {w.unit(reading.unit)}")
    seen = w.clock(state.last_seen, now, lang) if state.last_seen else ""
    return escape(" · ".join(parts)) + (f" <small>({escape(seen)})</small>" if seen else "")


def _device_line(state: DeviceState, now: datetime, lang: Lang, with_kecamatan: bool) -> str:
    where = f" <small>{escape(state.device.kecamatan)}</small>" if with_kecamatan else ""
    details = _details(state, now, lang)
    line = f'<br><span class="d">{details}</span>' if details else ""
    return f"<li><b>{escape(state.device.name)}</b>{where} {_badge(state, lang)}{line}</li>"


def _warnings(warnings: tuple[ActiveWarning, ...], now: datetime, lang: Lang) -> str:
    """Active public warnings first on every page (their absence said too)."""
    if not warnings:
        return f"<h2>{escape(w.WARNINGS(lang))}</h2><p>{escape(w.NO_WARNINGS(lang))}</p>"
    lines = []
    for warning in warnings:
        text_colour = ";color:#000" if warning.colour in DARK_TEXT else ""
        since = w.WARNING_SINCE(lang).format(time=w.clock(warning.since, now, lang))
        lines.append(
            f'<li><span class="s" style="background:{COLOURS.get(warning.colour, "#ef6c00")}'
            f'{text_colour}">{escape(w.level_word(Text(warning.level, warning.level), lang))}'
            f"</span> <b>{escape(warning.title(lang))}</b><br>"
            f'<span class="d">{escape(warning.device.name)}, {escape(warning.device.kecamatan)}'
            f" · {escape(since)}</span></li>"
        )
    return f"<h2>{escape(w.WARNINGS(lang))}</h2><ul>{''.join(lines)}</ul>"


def _sections(states: tuple[DeviceState, ...], now: datetime, lang: Lang, wide: bool) -> str:
    out = []
    for device_type, title in w.SECTIONS.items():
        mine = [s for s in states if s.device.type == device_type]
        if mine:
            lines = "".join(_device_line(s, now, lang, wide) for s in mine)
            out.append(f"<h2>{escape(title(lang))}</h2><ul>{lines}</ul>")
    return "".join(out)


def _page(
    snapshot: Snapshot | None,
    title: str,
    body: str,
    path: str,
    now: datetime,
    lang: Lang,
    stale: bool,
) -> str:
    other = "" if lang is Lang.EN else "?lang=en"
    switch = f'<a href="{escape(path + other)}" hreflang="{"id" if other == "" else "en"}">'
    notice = ""
    updated = ""
    if snapshot is None:
        notice = f'<p class="w">{escape(w.NO_DATA_YET(lang))}</p>'
    else:
        when = w.clock(snapshot.data_at, now, lang)
        updated = escape(w.UPDATED(lang).format(time=when))
        if stale:
            notice = f'<p class="w" role="status">{escape(w.STALE(lang).format(time=when))}</p>'
    suffix = "" if lang is Lang.ID else "?lang=en"
    return (
        f'<!doctype html><html lang="{lang.value}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p><small>{escape(w.TAGLINE(lang))}. {updated}"
        f"</small></p><nav>{switch}{escape(w.OTHER_LANG(lang))}</a>"
        f'<a href="/{suffix}">{escape(w.ALL(lang))}</a>'
        f'<a href="/api/v1/{suffix}">{escape(w.OPEN_DATA(lang))}</a></nav></header>'
        f"{notice}{body}<footer><p><small>{escape(w.DISCLAIMER(lang))} "
        f"{escape(w.LICENCE_NOTE(lang))}</small></p></footer></body></html>"
    )


def regency_page(snapshot: Snapshot | None, now: datetime, lang: Lang, stale: bool) -> str:
    regency = snapshot.regency if snapshot else ""
    title = w.REGENCY(lang).format(name=regency) if regency else "kotaflow"
    body = ""
    if snapshot is not None:
        suffix = "" if lang is Lang.ID else "?lang=en"
        links = "".join(
            f'<li><a href="/kecamatan/{w.slug(k)}{suffix}">{escape(k)}</a></li>'
            for k in snapshot.kecamatan
        )
        body = (
            _warnings(snapshot.warnings, now, lang)
            + _sections(snapshot.devices, now, lang, wide=True)
            + f"<h2>{escape(w.KECAMATAN(lang))}</h2><ul>{links}</ul>"
        )
    return _page(snapshot, title, body, "/", now, lang, stale)


def kecamatan_page(
    snapshot: Snapshot, kecamatan: str, now: datetime, lang: Lang, stale: bool
) -> str:
    title = f"{w.KECAMATAN(Lang.ID)} {kecamatan}"
    if lang is Lang.EN:
        title = f"{kecamatan} district"
    body = _warnings(snapshot.warnings_in(kecamatan), now, lang) + _sections(
        snapshot.in_kecamatan(kecamatan), now, lang, wide=False
    )
    return _page(snapshot, title, body, f"/kecamatan/{w.slug(kecamatan)}", now, lang, stale)
