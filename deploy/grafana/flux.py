"""The Flux queries behind every panel, variable and Grafana alert rule (pure text).

Grafana's InfluxDB data source (Flux mode) rewrites ``v.timeRangeStart``,
``v.timeRangeStop``, ``v.windowPeriod`` and ``v.defaultBucket`` before sending a query, and
its template engine replaces ``${var}`` / ``${var:regex}``. Queries here use exactly those;
:mod:`deploy.grafana.interpolate` reproduces both steps so the same text can be run against
InfluxDB without Grafana (``kotaflow grafana check`` and the tests).

Schemas read (written by ``processors/``):

* telemetry: measurement = device type; tags ``device``, ``kecamatan``, ``type``; one
  field per metric; event time;
* rollups: measurement = device type; tags ``device``, ``kecamatan``, ``metric``, ``type``,
  ``window`` (``1m``/``1h``/``1d``); fields ``count``, ``min``, ``max``, ``mean``, ``sum``,
  ``last``;
* alerts (``kotaflow/wire/alerts.py``): tags ``device``, ``kecamatan``, ``rule``,
  ``severity``, ``status``, ``type``; fields ``change``, ``level``, ``text``, ``value``,
  ``threshold``, ``id``;
* pipeline health (``processors/runtime/health.py``): tags ``stage``, ``instance`` (``reason`` on
  dead-letter counts); cumulative counters ``records_in``, ``records_out``, ``deadletter``,
  gauges ``consumer_lag``, ``write_ms_p50``, ``write_ms_max``.

Record properties are never named ``bucket``, ``organization`` or like the ``v.*``
macros: Grafana rewrites any ``x.<macro>`` it finds, whatever ``x`` is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from processors.alerting.model import Rule, RuleKind, Scope, SignalKind
from processors.runtime.influx import flux_string

TIME_RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
STATUS_LOOKBACK = "-30d"
"""How far back the device map looks for a device's last reading."""
VARIABLE_LOOKBACK = "-30d"
SILENT_COLUMNS = ("name", "device", "type", "kecamatan", "last_seen", "age_s", "status")
ALERT_FIELDS = ("level", "value", "threshold", "change")
"""Alert event fields shown in tables."""


@dataclass(frozen=True, slots=True)
class RegistryRow:
    """One device as the map and the device panels see it (from the registry)."""

    device: str
    name: str
    type: str
    kecamatan: str
    latitude: float
    longitude: float
    metric: str
    """The metric the map shows for this device (its type's headline metric)."""
    unit: str
    silent_after_s: int
    steps: tuple[float, ...] = ()
    """Where the headline metric's bands start (ascending), e.g. Waspada, Siaga, Awas."""
    categories: tuple[str, ...] = ("-",)
    """The band names: one more than ``steps`` (below the first step, then each band)."""
    colours: tuple[str, ...] = ("#8e8e8e",)
    """The bands' colours (for Grafana's value mappings; not part of the query)."""


MAX_STEPS = 4
"""Band steps a registry row carries (ISPU has the most: Sedang .. Berbahaya)."""
NO_STEP = 1.0e18
"""Above any value a sensor reports (Flux float literals have no exponent form)."""
_STEP_COLUMNS = tuple(f"step{i}" for i in range(1, MAX_STEPS + 1))
_CATEGORY_COLUMNS = tuple(f"category{i}" for i in range(MAX_STEPS + 1))


def var(name: str) -> str:
    """A template variable inside a Flux string literal: ``"${name}"``."""
    return f'"${{{name}}}"'


def var_regex(name: str) -> str:
    """A template variable as an anchored Flux regex (``All`` maps to ``.*``)."""
    return f"/^${{{name}:regex}}$/"


def any_of(column: str, values: Iterable[str]) -> str:
    """``r.col == "a" or r.col == "b"`` (parenthesised), pushed down to storage by InfluxDB."""
    parts = [f"r.{column} == {flux_string(value)}" for value in values]
    if not parts:
        raise ValueError(f"any_of({column!r}) needs at least one value")
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _pipe(*stages: str) -> str:
    return "\n  |> ".join(stages)


def flux_float(value: float) -> str:
    """A Flux float literal: digits and a point, never an exponent (``1e+18`` is invalid)."""
    text = repr(float(value))
    return text if "e" not in text else f"{value:.1f}"


def keep(*columns: str) -> str:
    return "keep(columns: [" + ", ".join(f'"{c}"' for c in columns) + "])"


def drop(*columns: str) -> str:
    return "drop(columns: [" + ", ".join(f'"{c}"' for c in columns) + "])"


def metric_series(
    bucket: str,
    types: Sequence[str],
    metric: str,
    *,
    every: str = "v.windowPeriod",
    fn: str = "mean",
    extra: str | None = None,
    local_days: str | None = None,
) -> str:
    """One series per device: ``metric`` of every device of ``types``, windowed.

    ``local_days`` (a time zone name) aligns day-long windows to local midnight.
    """
    condition = f"{any_of('_measurement', types)} and r._field == {flux_string(metric)}"
    if extra:
        condition += f" and {extra}"
    location = (
        f", location: timezone.location(name: {flux_string(local_days)})" if local_days else ""
    )
    body = _pipe(
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => {condition})",
        f"aggregateWindow(every: {every}, fn: {fn}, createEmpty: false{location})",
        'keep(columns: ["_time", "_value", "_field", "device"])',
    )
    return f'import "timezone"\n\n{body}' if local_days else body


def latest_by_device(bucket: str, types: Sequence[str], metric: str) -> str:
    """The latest value of ``metric`` per device in the time range (bar gauges)."""
    return _pipe(
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => {any_of('_measurement', types)} and r._field == {flux_string(metric)})",
        "last()",
        'keep(columns: ["_time", "_value", "_field", "device"])',
    )


def window_total_by_device(
    bucket: str, types: Sequence[str], metric: str, *, fn: str, timezone: str
) -> str:
    """Per device, ``fn`` over today's local day (daily rain, daily consumption)."""
    return _pipe(
        f'import "timezone"\nimport "date"\n\nfrom(bucket: {flux_string(bucket)})',
        "range(start: date.truncate(t: now(), unit: 1d, location: "
        f"timezone.location(name: {flux_string(timezone)})))",
        f"filter(fn: (r) => {any_of('_measurement', types)} and r._field == {flux_string(metric)})",
        f"{fn}()",
        'keep(columns: ["_value", "_field", "device"])',
    )


def registry_rows(rows: Sequence[RegistryRow]) -> str:
    """The registry as a Flux table (``array.from``): positions and names live only there."""
    if not rows:
        raise ValueError("the registry has no enabled device")
    lines = [
        "  {"
        f"device: {flux_string(r.device)}, name: {flux_string(r.name)}, "
        f"type: {flux_string(r.type)}, kecamatan: {flux_string(r.kecamatan)}, "
        f"latitude: {flux_float(r.latitude)}, longitude: {flux_float(r.longitude)}, "
        f"metric: {flux_string(r.metric)}, unit: {flux_string(r.unit)}, "
        f"silent_after_s: {int(r.silent_after_s)}, {_bands_of(r)}"
        "},"
        for r in rows
    ]
    return "array.from(rows: [\n" + "\n".join(lines) + "\n])"


def _bands_of(row: RegistryRow) -> str:
    """``step1..stepN`` (unused: far above any value) and ``category0..categoryN``."""
    if len(row.steps) > MAX_STEPS or len(row.categories) != len(row.steps) + 1:
        raise ValueError(f"{row.device}: {len(row.steps)} band steps (at most {MAX_STEPS})")
    steps = [*row.steps, *[NO_STEP] * (MAX_STEPS - len(row.steps))]
    # Padding is "-", not "": array.from drops empty strings and the table breaks (2.7.12).
    categories = [*row.categories, *["-"] * (MAX_STEPS + 1 - len(row.categories))]
    return ", ".join(
        [f"{c}: {flux_float(v)}" for c, v in zip(_STEP_COLUMNS, steps, strict=True)]
        + [f"{c}: {flux_string(n)}" for c, n in zip(_CATEGORY_COLUMNS, categories, strict=True)]
    )


_AGE_AND_STATUS = (
    "    age_s = if exists r._time\n"
    "      then (int(v: now()) - int(v: r._time)) / 1000000000\n"
    "      else -1\n"
    "    status = if age_s < 0 then 2 else if age_s > l.silent_after_s then 1 else 0\n"
)
"""Inside a ``join.left`` of registry ``l`` and latest reading ``r``: the reading's age and
the device status (0 reporting, 1 silent, 2 never reported)."""


def device_status(bucket: str, rows: Sequence[RegistryRow], *, only_silent: bool = False) -> str:
    """Every registered device with position, last reading, age and status.

    ``status``: 0 reporting, 1 silent (nothing for ``silent_after_s``), 2 never reported in
    the look-back. ``value`` is the latest reading of the device's headline metric and
    ``category`` the band it falls in (e.g. Siaga, Tidak Sehat; ``-`` without data or bands).
    """
    headline = sorted({(r.type, r.metric) for r in rows})
    selector = " or ".join(
        f"(r._measurement == {flux_string(t)} and r._field == {flux_string(m)})"
        for t, m in headline
    )
    query = (
        _status_join(
            rows,
            _latest(bucket, selector, 'keep(columns: ["device", "_time", "_value"])'),
            "{l with last_seen: r._time, age_s: age_s, value: r._value, status: status}",
        )
        + "\n"
        # The category of the latest value: how many band steps it has reached.
        "  |> map(fn: (r) => {\n"
        f"    v = if exists r.value then r.value else {flux_float(-NO_STEP)}\n"
        "    band = (if v >= r.step1 then 1 else 0) + (if v >= r.step2 then 1 else 0)"
        " + (if v >= r.step3 then 1 else 0) + (if v >= r.step4 then 1 else 0)\n"
        '    category = if not exists r.value then "-" else if band == 0 then r.category0'
        " else if band == 1 then r.category1 else if band == 2 then r.category2"
        " else if band == 3 then r.category3 else r.category4\n"
        "    return {r with category: category}\n"
        "  })\n"
        "  |> " + drop("silent_after_s", *_STEP_COLUMNS, *_CATEGORY_COLUMNS)
    )
    if only_silent:
        query += "\n  |> filter(fn: (r) => r.status > 0)"
        query += "\n  |> " + keep(*SILENT_COLUMNS)
    return query


def latest_report(bucket: str, rows: Sequence[RegistryRow], fields: Sequence[str]) -> str:
    """Every registered device of ``rows`` with the ``fields`` of its latest report side by
    side, its last report time, age and status as :func:`device_status` has them (the edge
    gateways' backlog table: one row per edge)."""
    types = sorted({r.type for r in rows})
    columns = ", ".join(f"{f}: r.{f}" for f in fields)
    return _status_join(
        rows,
        _latest(
            bucket,
            f"{any_of('_measurement', types)} and {any_of('_field', fields)}",
            'pivot(rowKey: ["device", "_time"], columnKey: ["_field"], valueColumn: "_value")',
        ),
        "{name: l.name, device: l.device, kecamatan: l.kecamatan, "
        f"{columns}, last_seen: r._time, age_s: age_s, status: status}}",
    )


def _latest(bucket: str, condition: str, shape: str) -> str:
    """The latest point of each series matching ``condition`` in the status look-back, in
    one table, then ``shape``d to one row per device."""
    return _pipe(
        f"from(bucket: {flux_string(bucket)})",
        f"range(start: {STATUS_LOOKBACK})",
        f"filter(fn: (r) => {condition})",
        "last()",
        "group()",
        shape,
    )


def _status_join(rows: Sequence[RegistryRow], latest: str, returned: str) -> str:
    """The registry (``l``) left-joined with ``latest`` (``r``: one row per device with its
    ``_time``); each row is ``returned``, which may use ``age_s`` and ``status``."""
    return (
        'import "array"\nimport "join"\n\n'
        f"registry = {registry_rows(rows)}\n"
        f"latest = {latest}\n\n"
        "join.left(\n"
        "  left: registry,\n"
        "  right: latest,\n"
        "  on: (l, r) => l.device == r.device,\n"
        "  as: (l, r) => {\n" + _AGE_AND_STATUS + f"    return {returned}\n"
        "  },\n"
        ")"
    )


def device_info(rows: Sequence[RegistryRow], device_var: str) -> str:
    """The registry entry of the device chosen in ``device_var``."""
    return 'import "array"\n\n' + _pipe(
        registry_rows(rows),
        f"filter(fn: (r) => r.device == {var(device_var)})",
        'keep(columns: ["name", "device", "type", "kecamatan", "latitude", "longitude"])',
    )


def latest_of_device(
    bucket: str, types: Sequence[str], device_var: str, units: dict[str, str]
) -> str:
    """Every metric's latest value for one device, with its unit."""
    pairs = ", ".join(
        f"{{key: {flux_string(metric)}, value: {flux_string(unit)}}}"
        for metric, unit in sorted(units.items())
    )
    return f'import "dict"\n\nunits = dict.fromList(pairs: [{pairs}])\n\n' + _pipe(
        f"from(bucket: {flux_string(bucket)})",
        f"range(start: {STATUS_LOOKBACK})",
        f"filter(fn: (r) => {any_of('_measurement', types)} and r.device == {var(device_var)})",
        "last()",
        "group()",
        "map(fn: (r) => ({_time: r._time, _field: r._field, _value: r._value,"
        ' unit: dict.get(dict: units, key: r._field, default: "")}))',
    )


def device_metric(bucket: str, types: Sequence[str], device_var: str, metric_var: str) -> str:
    """One device, one metric (the drill-down's repeated panel)."""
    return _pipe(
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => {any_of('_measurement', types)}"
        f" and r.device == {var(device_var)} and r._field == {var(metric_var)})",
        "aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
        'keep(columns: ["_time", "_value", "_field"])',
    )


def device_rollups(bucket: str, device_var: str, metric_var: str) -> str:
    """Min / mean / max of one device's metric from the 1-minute rollups."""
    base = _pipe(
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => r.device == {var(device_var)} and r.metric == {var(metric_var)}"
        ' and r.window == "1m")',
    )
    parts = ",\n".join(
        f'  base |> filter(fn: (r) => r._field == "{field}")'
        f" |> aggregateWindow(every: v.windowPeriod, fn: {field}, createEmpty: false)"
        for field in ("min", "mean", "max")
    )
    return (
        f"base = {base}\n\nunion(tables: [\n{parts},\n])\n"
        '  |> keep(columns: ["_time", "_value", "_field"])'
    )


def tag_values(bucket: str, tag: str, types: Sequence[str], predicate: str | None = None) -> str:
    """A template variable's values: one tag's values on the device measurements."""
    where = any_of("_measurement", types) + (f" and {predicate}" if predicate else "")
    return (
        'import "influxdata/influxdb/schema"\n\n'
        f"schema.tagValues(bucket: {flux_string(bucket)}, tag: {flux_string(tag)}, "
        f"predicate: (r) => {where}, start: {VARIABLE_LOOKBACK})"
    )


def field_keys(bucket: str, types: Sequence[str], predicate: str) -> str:
    """A template variable's values: the metrics (fields) of the device measurements."""
    return (
        'import "influxdata/influxdb/schema"\n\n'
        f"schema.fieldKeys(bucket: {flux_string(bucket)}, "
        f"predicate: (r) => {any_of('_measurement', types)} and {predicate}, "
        f"start: {VARIABLE_LOOKBACK})"
    )


def alerts_latest(
    bucket: str, measurement: str, *, firing_only: bool, device_var: str | None = None
) -> str:
    """The latest alert event per rule and device (firing ones, or all in the time range).

    Each event is written with its fields at one timestamp; ``pivot`` joins them into a row.
    """
    condition = f"r._measurement == {flux_string(measurement)}"
    if device_var:
        condition += f" and r.device == {var(device_var)}"
    start = STATUS_LOOKBACK if firing_only else None
    stages = [
        f"from(bucket: {flux_string(bucket)})",
        f"range(start: {start})" if start else TIME_RANGE,
        f"filter(fn: (r) => {condition})",
        f"filter(fn: (r) => {any_of('_field', ALERT_FIELDS)})",
        'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        'group(columns: ["rule", "device"])',
    ]
    if firing_only:
        stages += [
            'sort(columns: ["_time"])',
            'last(column: "_time")',
            'filter(fn: (r) => r.status == "firing")',
        ]
    stages += [
        "group()",
        'sort(columns: ["_time"], desc: true)',
        keep("_time", "severity", "rule", "device", "kecamatan", "type", "status", *ALERT_FIELDS),
    ]
    return _pipe(*stages)


def alerts_count(bucket: str, measurement: str) -> str:
    """How many (rule, device) pairs are firing now (a stat panel; 0 when none ever fired)."""
    firing = alerts_latest(bucket, measurement, firing_only=True)
    return (
        f'import "array"\n\nfiring = {firing}\n  |> count(column: "rule")\n\n'
        'union(tables: [firing, array.from(rows: [{rule: 0}])])\n  |> sum(column: "rule")'
    )


def health_rate(
    bucket: str, measurement: str, field: str, *, by: str = "stage", reason: bool = False
) -> str:
    """Per-second rate of a cumulative health counter, summed over process instances.

    Counters restart at 0 with their process; ``nonNegative`` turns that drop into a gap.
    """
    condition = f"r._measurement == {flux_string(measurement)} and r._field == {flux_string(field)}"
    condition += " and exists r.reason" if reason else " and not exists r.reason"
    return _pipe(
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => {condition})",
        "aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)",
        "derivative(unit: 1s, nonNegative: true)",
        f'group(columns: ["{by}"])',
        "aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)",
        f'keep(columns: ["_time", "_value", "{by}"])',
    )


def health_gauge(bucket: str, measurement: str, field: str, *, fn: str, combine: str) -> str:
    """A health gauge per stage: ``fn`` per instance and window, then ``combine`` instances."""
    return _pipe(
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => r._measurement == {flux_string(measurement)}"
        f" and r._field == {flux_string(field)})",
        f"aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)",
        'group(columns: ["stage"])',
        f"aggregateWindow(every: v.windowPeriod, fn: {combine}, createEmpty: false)",
        'keep(columns: ["_time", "_value", "stage"])',
    )


def device_count(bucket: str, rows: Sequence[RegistryRow], status: int) -> str:
    """How many devices have ``status`` (0 reporting, 1 silent, 2 never reported)."""
    return (
        device_status(bucket, rows)
        + f'\n  |> filter(fn: (r) => r.status == {int(status)}, onEmpty: "keep")'
        + '\n  |> count(column: "device")'
    )


def mean_by_device(bucket: str, types: Sequence[str], metric: str, *, start: str) -> str:
    """Per device, the mean of ``metric`` since ``start`` (e.g. the 24-hour ISPU mean)."""
    return _pipe(
        f"from(bucket: {flux_string(bucket)})",
        f"range(start: {start})",
        f"filter(fn: (r) => {any_of('_measurement', types)} and r._field == {flux_string(metric)})",
        "mean()",
        'keep(columns: ["_value", "_field", "device"])',
    )


SERIES_COLUMNS = ("_time", "_value", "device", "kecamatan", "type")
"""What an alert query returns: one series per device, labelled by its tags."""
_AGGREGATE_FN = MappingProxyType({"sum": "sum", "avg": "mean", "min": "min", "max": "max"})


def scope_condition(scope: Scope) -> list[str]:
    """A rule's scope as Flux filter conditions (empty scope: no condition)."""
    parts = []
    if scope.types:
        parts.append(any_of("_measurement", sorted(scope.types)))
    if scope.kecamatan:
        parts.append(any_of("kecamatan", sorted(scope.kecamatan)))
    if scope.devices:
        parts.append(any_of("device", sorted(scope.devices)))
    parts += [f"r.device != {flux_string(d)}" for d in sorted(scope.exclude_devices)]
    parts += [f"r._measurement != {flux_string(t)}" for t in sorted(scope.exclude_types)]
    return parts


def rule_signal(bucket: str, rule: Rule, types: Sequence[str]) -> str:
    """The signal an alert rule compares with its levels, one series per device.

    Same signal as ``processors/alerting``: the latest value, an aggregate over the window,
    the rise (latest - lowest) or fall (highest - latest) over the window, or - for no-data
    rules - the seconds since the device's last reading.
    """
    conditions = scope_condition(rule.scope)
    if not rule.scope.types:  # only device measurements (alert events share the bucket)
        conditions.insert(0, any_of("_measurement", types))
    if rule.metric is not None:
        conditions.append(f"r._field == {flux_string(rule.metric)}")
    stages = [
        f"from(bucket: {flux_string(bucket)})",
        TIME_RANGE,
        f"filter(fn: (r) => {' and '.join(conditions) or 'true'})",
    ]
    if rule.kind is RuleKind.THRESHOLD:
        stages.append("last()")
    elif rule.kind is RuleKind.AGGREGATE:
        stages += [
            f"{_AGGREGATE_FN[rule.signal.kind.value]}()",
            'duplicate(column: "_stop", as: "_time")',
        ]
    elif rule.kind is RuleKind.RATE:
        change = "r.last - r.lo" if rule.signal.kind is SignalKind.RISE else "r.hi - r.last"
        stages += [
            "reduce(\n"
            "      identity: {lo: 0.0, hi: 0.0, last: 0.0, n: 0},\n"
            "      fn: (r, accumulator) => ({\n"
            "        lo: if accumulator.n == 0 or r._value < accumulator.lo"
            " then r._value else accumulator.lo,\n"
            "        hi: if accumulator.n == 0 or r._value > accumulator.hi"
            " then r._value else accumulator.hi,\n"
            "        last: r._value,\n"
            "        n: accumulator.n + 1,\n"
            "      }),\n"
            "  )",
            f"map(fn: (r) => ({{r with _value: {change}, _time: r._stop}}))",
        ]
    else:
        stages += [
            "last()",
            'group(columns: ["device", "kecamatan", "type"])',
            'max(column: "_time")',
            "map(fn: (r) => ({r with"
            " _value: float(v: int(v: now()) - int(v: r._time)) / 1000000000.0}))",
        ]
    stages.append(keep(*SERIES_COLUMNS))
    return _pipe(*stages)
