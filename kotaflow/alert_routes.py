"""The ``alerting.routes`` / ``alerting.default_route`` settings: who hears about what, when.

Alertmanager-style but small. Routes are tried in order; an alert goes to the receivers of
the first route that matches it, and further down the list only while the matching routes
say ``continue: true``. No route matched: the default route. A route matches on the rule
name (shell patterns), the rule's labels (``team``, ``hazard``, ...), the level, the severity
and the kecamatan; an unset matcher matches anything. Outside its ``active_hours`` or inside
its ``quiet_hours`` (WITA, Asia/Makassar) a route is skipped, so a later one takes the alert.
Per route: ``group_window`` (fired alerts of one rule in one kecamatan within the window go
out as one message), ``escalate_after`` and ``escalate_to`` (an alert nobody acknowledged by
then is sent to these receivers too). Example (settings YAML)::

    alerting:
      routes:
        - match: {labels: {team: bpbd}, level: [Awas]}
          receivers: [camat-wa, bpbd-duty-wa]
          escalate_after: 15m
          escalate_to: [kalak-bpbd-wa]
          continue: true
        - match: {labels: {team: bpbd}}
          receivers: [bpbd-telegram]
          active_hours: [{days: [mon, tue, wed, thu, fri], start: "07:30", end: "16:00"}]
        - match: {labels: {team: dlh}}
          receivers: [dlh-mail]
      default_route: {receivers: [ops-hook]}

Part of the foundation (composed by :mod:`kotaflow.alerting_settings`): it imports no stage.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _duration(value: object) -> object:
    """``"15m"`` -> 15 minutes (numbers are seconds), as the rule file writes durations."""
    if isinstance(value, str) and (found := _DURATION.match(value)):
        return timedelta(seconds=float(found.group(1)) * _UNIT_S[found.group(2)])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    return value


RouteDuration = Annotated[timedelta, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TimeWindow(_Strict):
    """Days and a time of day in WITA; ``end`` before ``start`` runs over midnight."""

    days: list[Weekday] = list(WEEKDAYS)
    start: time = time(0, 0)
    end: time = time(23, 59, 59)

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: list[Weekday]) -> list[Weekday]:
        if not value:
            raise ValueError("name at least one day")
        return value


class RouteMatch(_Strict):
    """Every given matcher must hold; within a list, any item may."""

    rule: list[str] = Field([], description="rule names or shell patterns, e.g. 'hujan_*'")
    labels: dict[str, list[str]] = Field({}, description="label -> allowed values")
    level: list[str] = []
    severity: list[Literal["info", "warning", "major", "critical"]] = []
    kecamatan: list[str] = []

    @field_validator("labels", mode="before")
    @classmethod
    def _one_value(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value


class _RouteTiming(_Strict):
    group_window: RouteDuration = Field(
        timedelta(minutes=2), description="collect fired alerts this long into one message; 0 off"
    )
    escalate_after: RouteDuration | None = Field(
        None, description="unacknowledged this long: tell escalate_to"
    )
    escalate_to: list[str] = []


class DefaultRoute(_RouteTiming):
    """Where alerts go that no route matched (and the timing of rules naming receivers)."""

    receivers: list[str] | None = Field(
        None, description="None: alerting.default_receivers, else every receiver; []: nobody"
    )


class Route(_RouteTiming):
    name: str | None = Field(None, description="shown by 'alerts routes test'; default route-N")
    match: RouteMatch = RouteMatch()
    receivers: list[str] = Field(description="may be empty: matched alerts notify nobody")
    continue_: bool = Field(False, alias="continue")
    active_hours: list[TimeWindow] = Field([], description="only then; empty: always")
    quiet_hours: list[TimeWindow] = Field([], description="never then")
