"""SenML JSON (RFC 8428) on ``kotaflow/<device_id>/senml``.

A pack is a JSON array of records. Base fields (``bn``, ``bt``, ``bu``, ``bv``, ``bver``)
apply to their record and every later one until replaced; a record's name is ``bn + n``,
its unit ``u`` else ``bu``, its value ``v + bv`` (or ``vb`` for boolean metrics), its time
``bt + t``. A resolved time below 2**28 s is relative to the receive time ("now");
0 means "now" and the reading gets the ``receive_time`` flag. Units are SenML/RFC 8798
names, converted to the canonical unit through the catalogue.

How a name maps to a metric (the topic already names the device):

* ``temperature`` (or an alias such as ``temp``) - the metric itself;
* ``<anything>/<device>/temperature`` or ``<device>/temperature`` - the part before the
  last ``/`` names a device: its last segment must be the topic's device (id, DevEUI or
  TTS id), else ``device_mismatch``;
* ``urn:dev:<scheme>:<device>:temperature`` (RFC 9039 device URNs, as in RFC 8428's
  examples) - same check on ``<device>``;
* a name that is only a device (``urn:dev:ow:10e2073a01080063``, ``rtg-wx-01/``) - the
  unit picks the metric when exactly one metric of the device's type accepts it
  (``Cel`` -> temperature, ``%RH`` -> humidity), else ``unknown_metric``.

Refused for the whole pack: a ``bver`` above 10 (``unsupported_version``) and any label
ending in ``_`` (``must_understand``: RFC 8428 requires an error, we understand none).
Records with string/data values or only a sum are refused one by one (``bad_type``).
"""

from __future__ import annotations

import math
from typing import Any

from devices.decoding import (
    DecodeContext,
    DecodeResult,
    PayloadReadings,
    guarded,
    parse_json,
    rejected,
    resolve_device,
)
from devices.registry import Device
from devices.topics import TopicMatch
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

FORMAT = PayloadFormat.SENML_JSON
SENML_VERSION = 10
RELATIVE_TIME_LIMIT_S = 2**28
_BASE_LABELS = frozenset(("bn", "bt", "bu", "bv", "bs", "bver"))
_VALUE_LABELS = frozenset(("v", "vb", "vs", "vd"))
_KNOWN_LABELS = _BASE_LABELS | _VALUE_LABELS | {"n", "u", "s", "t", "ut"}


@guarded(FORMAT)
def decode(payload: bytes, match: TopicMatch, rx_ms: int, ctx: DecodeContext) -> DecodeResult:
    data = parse_json(payload, ctx.limits, match.device_key)
    if isinstance(data, DecodeResult):
        return data
    if not isinstance(data, list) or not data:
        return rejected(
            Reason.BAD_SHAPE, "a SenML pack is a non-empty JSON array of records", match.device_key
        )
    refusal = _pack_refusal(data, match.device_key)
    if refusal is not None:
        return refusal
    device = resolve_device(ctx.fleet, match)
    if isinstance(device, DecodeResult):
        return device
    out = PayloadReadings.of(device, rx_ms, ctx)
    identities = _identities(device)
    base = _Base()
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            out.reject(Reason.BAD_SHAPE, f"record {index} is not a JSON object")
            continue
        if record.keys() & _BASE_LABELS and not base.update(record, index, out):
            continue
        _record(record, index, base, identities, out)
    return out.result


def _pack_refusal(pack: list[Any], device_key: str) -> DecodeResult | None:
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            continue
        for label in record.keys() - _KNOWN_LABELS:  # usually empty: a C-level set difference
            if label.endswith("_"):
                return rejected(
                    Reason.MUST_UNDERSTAND,
                    f"record {index} has must-understand label {label!r} that kotaflow "
                    "does not implement",
                    device_key,
                )
        version = record.get("bver")
        if version is not None and (
            not isinstance(version, int) or isinstance(version, bool) or version > SENML_VERSION
        ):
            return rejected(
                Reason.UNSUPPORTED_VERSION,
                f"record {index} has bver {version!r}; kotaflow reads SenML up to version "
                f"{SENML_VERSION}",
                device_key,
            )
    return None


class _Base:
    """The base fields in force, updated record by record."""

    __slots__ = ("name", "time", "unit", "value")

    def __init__(self) -> None:
        self.name = ""
        self.time = 0.0
        self.unit: str | None = None
        self.value = 0.0

    def update(self, record: dict[str, Any], index: int, out: PayloadReadings) -> bool:
        """Apply the record's base fields; False (and a rejection) if one is malformed."""
        bn, bt, bu, bv = (record.get(k) for k in ("bn", "bt", "bu", "bv"))
        problem = _not_string(bn, "bn") or _not_string(bu, "bu") or _not_number(bv, "bv")
        if problem:
            out.reject(Reason.BAD_TYPE, f"record {index}: {problem}")
            return False
        problem = _not_number(bt, "bt")
        if problem:
            out.reject(Reason.BAD_TIME, f"record {index}: {problem}")
            return False
        if bn is not None:
            self.name = bn
        if bt is not None:
            self.time = float(bt)
        if bu is not None:
            self.unit = bu
        if bv is not None:
            self.value = float(bv)
        return True


def _record(
    record: dict[str, Any],
    index: int,
    base: _Base,
    identities: frozenset[str],
    out: PayloadReadings,
) -> None:
    present = record.keys() & _VALUE_LABELS
    if not present:
        if "s" in record:
            out.reject(Reason.BAD_TYPE, f"record {index}: sum-only records are not supported")
        elif record.keys() - _BASE_LABELS:
            out.reject(Reason.BAD_SHAPE, f"record {index} has no value (v, vb, vs or vd)")
        return  # a record of base fields only sets context for the next ones
    if len(present) > 1:
        out.reject(Reason.BAD_SHAPE, f"record {index} has more than one value: {sorted(present)}")
        return
    n, u, t = record.get("n"), record.get("u"), record.get("t")
    problem = _not_string(n, "n") or _not_string(u, "u")
    if problem:
        out.reject(Reason.BAD_TYPE, f"record {index}: {problem}")
        return
    problem = _not_number(t, "t")
    if problem:
        out.reject(Reason.BAD_TIME, f"record {index}: {problem}")
        return
    name = base.name + (n or "")
    unit = u if u is not None else base.unit
    device_ref, metric_name = _split_name(name)
    if device_ref is not None and device_ref.lower() not in identities:
        out.reject(
            Reason.DEVICE_MISMATCH,
            f"record {index} is named {name!r}, which is not device {out.device.id}",
        )
        return
    if metric_name:
        metric = out.metric_named(metric_name)
    else:
        metric = out.device_type.by_unit.get(unit) if unit else None
        if metric is None:
            out.reject(
                Reason.UNKNOWN_METRIC,
                f"record {index} ({name!r}) names no metric and its unit {unit!r} does not "
                f"identify one of {out.device_type.name}'s",
            )
    if metric is None:
        return
    (label,) = present
    value = record[label]
    if label == "v" and _is_number(value):
        value = value + base.value
    seconds = base.time + (t if t is not None else 0.0)
    if seconds == 0:
        ts_ms = None  # "roughly now": the receive time, flagged
    elif seconds < RELATIVE_TIME_LIMIT_S:
        ts_ms = out.rx_ms + round(seconds * 1000)
    else:
        ts_ms = round(seconds * 1000)
    out.add_metric(metric, value, unit, ts_ms, ())


def _split_name(name: str) -> tuple[str | None, str]:
    """(device part or None, metric part) of a resolved SenML name."""
    if name.startswith("urn:dev:"):
        parts = name.split(":", 4)
        if len(parts) < 4:
            return name, ""
        return parts[3], parts[4] if len(parts) == 5 else ""
    if "/" in name:
        device_part, _, metric = name.rpartition("/")
        return device_part.rpartition("/")[2] or None, metric
    return None, name


def _identities(device: Device) -> frozenset[str]:
    names = {device.id, device.ns_device_id}
    if device.dev_eui:
        names.add(device.dev_eui)
    return frozenset(n.lower() for n in names)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _not_string(value: Any, label: str) -> str:
    if value is None or isinstance(value, str):
        return ""
    return f"{label} must be a string, got {type(value).__name__}"


def _not_number(value: Any, label: str) -> str:
    if value is None:
        return ""
    if not _is_number(value):
        return f"{label} must be a number, got {type(value).__name__}"
    if not math.isfinite(value):
        return f"{label} is {value}"
    return ""
