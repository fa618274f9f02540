"""InfluxDB line protocol, built by hand: escaping rules and the two schemas we write.

Why by hand: influxdb-client's ``Point`` costs several microseconds per point; at 10^5
readings/s that is most of a core. Series prefixes (measurement and sorted tags) are
escaped once per series and cached by the caller; per reading only the float is formatted.

Escaping (InfluxDB 2.x line protocol):

* measurement: ``,`` and space (and ``\\``) get a backslash;
* tag keys, tag values, field keys: ``,``, ``=`` and space (and ``\\``) get a backslash;
* newlines cannot be escaped anywhere: a name with ``\\n`` or ``\\r`` is refused
  (:class:`LineProtocolError`), empty tag values are left out (the protocol forbids them);
* floats are written with ``repr`` (shortest round-trip form), never ``nan``/``inf``.

Schemas:

* telemetry: ``<type>,device=..,kecamatan=..,type=.. <metric>=<value>,... <ts_ms>``;
  one line per device and timestamp, one field per metric; event time in ms precision,
  so a replayed reading overwrites itself.
* rollups: ``<type>,device=..,kecamatan=..,metric=..,type=..,window=1m
  count=<n>i,last=..,max=..,mean=..,min=..,sum=.. <window_start_ms>``; the same window
  written again overwrites the earlier aggregate (idempotent corrections).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ "})
_KEY_OR_TAG = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "})


class LineProtocolError(ValueError):
    """A name or value cannot be expressed in line protocol."""


def _check(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a line break")
    return text


def escape_measurement(name: str) -> str:
    if not name:
        raise LineProtocolError("empty measurement name")
    return _check(name, "measurement").translate(_MEASUREMENT)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _check(text, "name").translate(_KEY_OR_TAG)


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,k=v,...``: tags sorted by key (InfluxData's advice), empty ones left out."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value:
            parts.append(f"{escape_key(key)}={escape_key(value)}")
    return ",".join(parts)


def format_float(value: float) -> str:
    if not math.isfinite(value):
        raise LineProtocolError(f"field value {value!r} is not finite")
    return repr(float(value))


def line(prefix: str, fields: Iterable[tuple[str, str]], ts: int) -> str:
    """A line from an escaped series prefix, (escaped key, formatted value) pairs, a time."""
    body = ",".join(f"{key}={value}" for key, value in fields)
    if not body:
        raise LineProtocolError("a line needs at least one field")
    return f"{prefix} {body} {ts}"


def telemetry_tags(device: str, type_: str, kecamatan: str) -> dict[str, str]:
    return {"device": device, "kecamatan": kecamatan, "type": type_}


def rollup_tags(
    device: str, type_: str, kecamatan: str, metric: str, window: str
) -> dict[str, str]:
    return {
        "device": device,
        "kecamatan": kecamatan,
        "metric": metric,
        "type": type_,
        "window": window,
    }
