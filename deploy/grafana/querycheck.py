"""Run every panel's query of a rendered dashboard against InfluxDB, as Grafana would.

Grafana cannot run everywhere (not on our CI machines, not on an operator's laptop before a
release), so this does its part: resolve the dashboard's template variables in order by
running their own Flux queries, fill them and the time macros into each panel query
(:mod:`deploy.grafana.interpolate`), expand repeated panels over their variable's values,
run the queries and check each result has the shape the panel type needs:

* time series / state timeline: ``_time`` and a numeric ``_value``;
* bar gauge: a numeric ``_value``; stat: some numeric column;
* table: every column the panel renames is there;
* geomap: ``latitude``, ``longitude`` and the column the markers are coloured by;

and at least one row. It works on dashboard JSON (what Grafana is given), not on builders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from deploy.grafana.interpolate import AllValue, QueryWindow, interpolate

Runner = Callable[[str], Awaitable[list[dict[str, Any]]]]
"""Runs one Flux query and returns its rows (``processors.runtime.influx.InfluxSink.query``)."""
QUERY_TIMEOUT_S = 60.0
"""The sink retries server errors forever (right for the pipeline, not for a check)."""

Values = dict[str, str | AllValue]


@dataclass
class PanelCheck:
    dashboard: str
    panel: str
    query: str
    repeat: str | None = None
    rows: int = 0
    columns: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_dashboard(
    board: Mapping[str, Any],
    run: Runner,
    window: QueryWindow,
    choose: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
) -> list[PanelCheck]:
    """Every panel (repeats expanded) of ``board`` run and checked; variables chosen by
    ``choose`` when given, else *All* where allowed, else the first value.

    ``strict``: every panel must return rows. Otherwise a panel with a "no value" text (a
    list of exceptions: silent devices, firing alerts) may be empty."""
    uid = str(board.get("uid"))
    values, options, problems = await resolve_variables(board, run, window, choose or {})
    checks = [PanelCheck(uid, f"variable {p}", "", problems=[p]) for p in problems]
    for panel in _panels(board):
        repeat = panel.get("repeat")
        if repeat:
            for option in options.get(repeat, []):
                checks.append(
                    await _check_panel(
                        uid, panel, {**values, repeat: option}, run, window, option, strict
                    )
                )
        else:
            checks.append(await _check_panel(uid, panel, values, run, window, None, strict))
    return checks


async def resolve_variables(
    board: Mapping[str, Any], run: Runner, window: QueryWindow, choose: Mapping[str, str]
) -> tuple[Values, dict[str, list[str]], list[str]]:
    """Values for each query variable in order (each may use the ones before it)."""
    values: Values = {}
    options: dict[str, list[str]] = {}
    problems: list[str] = []
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        name = variable["name"]
        rows = await _run(run, interpolate(str(variable.get("query", "")), values, window))
        found = sorted({str(row["_value"]) for row in rows if row.get("_value") is not None})
        options[name] = found
        if name in choose:
            values[name] = choose[name]
        elif variable.get("includeAll") and variable.get("allValue"):
            values[name] = AllValue(variable["allValue"])
        elif found:
            values[name] = found[0]
        if not found:
            problems.append(f"{name}: its query returned no values")
    return values, options, problems


async def _run(run: Runner, query: str) -> list[dict[str, Any]]:
    return await asyncio.wait_for(run(query), QUERY_TIMEOUT_S)


def _panels(board: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out


async def _check_panel(
    uid: str,
    panel: Mapping[str, Any],
    values: Values,
    run: Runner,
    window: QueryWindow,
    repeat_value: str | None,
    strict: bool,
) -> PanelCheck:
    targets = panel.get("targets", [])
    query = interpolate(str(targets[0].get("query", "")), values, window) if targets else ""
    check = PanelCheck(uid, str(panel.get("title")), query, repeat_value)
    if len(targets) != 1:
        check.problems.append(f"expected one query, found {len(targets)}")
        return check
    try:
        rows = await _run(run, query)
    except Exception as err:  # the query failed in InfluxDB: report, do not stop
        check.problems.append(f"query failed: {type(err).__name__}: {err}")
        return check
    check.rows = len(rows)
    check.columns = tuple(sorted({key for row in rows for key in row}))
    may_be_empty = not strict and "noValue" in panel.get("fieldConfig", {}).get("defaults", {})
    if rows or not may_be_empty:
        check.problems += shape_problems(panel, rows)
    return check


def shape_problems(panel: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """What is missing from ``rows`` for this panel type to draw them."""
    if not rows:
        return ["no rows"]
    columns = {key for row in rows for key in row}
    kind = panel.get("type")
    needed: set[str] = set()
    problems: list[str] = []
    if kind in ("timeseries", "state-timeline"):
        needed = {"_time", "_value"}
    elif kind == "bargauge":
        needed = {"_value"}
    elif kind == "table":
        needed = set(_renamed_columns(panel))
    elif kind == "geomap":
        needed = {"latitude", "longitude", *_colour_fields(panel)}
    missing = needed - columns
    if missing:
        problems.append(f"missing columns {sorted(missing)} (have {sorted(columns)})")
    numeric = "_value" if "_value" in needed else None
    if kind == "stat":
        if not any(_is_number(v) for row in rows for v in row.values()):
            problems.append("no numeric column")
    elif numeric and not any(_is_number(row.get(numeric)) for row in rows):
        problems.append(f"{numeric} is never a number")
    return problems


def _renamed_columns(panel: Mapping[str, Any]) -> list[str]:
    names = []
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byName" and any(
            p.get("id") == "displayName" for p in override.get("properties", [])
        ):
            names.append(str(matcher.get("options")))
    return names


def _colour_fields(panel: Mapping[str, Any]) -> list[str]:
    fields = []
    for layer in panel.get("options", {}).get("layers", []):
        colour = layer.get("config", {}).get("style", {}).get("color", {})
        if colour.get("field"):
            fields.append(str(colour["field"]))
    return fields


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def check_rule(rule: Mapping[str, Any], run: Runner, window: QueryWindow) -> PanelCheck:
    """An alert rule's data query (``refId`` A) over its relative time range."""
    signal = next(q for q in rule["data"] if q["refId"] == "A")
    seconds = int(signal.get("relativeTimeRange", {}).get("from", 3600))
    own = QueryWindow(
        window.stop - timedelta(seconds=seconds),
        window.stop,
        window.interval,
        window.default_bucket,
        window.organization,
    )
    query = interpolate(str(signal["model"]["query"]), {}, own)
    check = PanelCheck(str(rule.get("uid")), str(rule.get("title")), query)
    try:
        rows = await _run(run, query)
    except Exception as err:  # reported, like a panel's
        check.problems.append(f"query failed: {type(err).__name__}: {err}")
        return check
    check.rows = len(rows)
    check.columns = tuple(sorted({key for row in rows for key in row}))
    if not rows:
        check.problems.append("no rows")
    elif missing := {"_time", "_value", "device"} - set(check.columns):
        check.problems.append(f"missing columns {sorted(missing)}")
    return check
