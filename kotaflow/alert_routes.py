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

from datetime import time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kotaflow.durations import Duration

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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
    group_window: Duration = Field(
        timedelta(minutes=2), description="collect fired alerts this long into one message; 0 off"
    )
    escalate_after: Duration | None = Field(
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
