"""Which destinations an alert event goes to, and when (pure; time is passed in).

* Every published event (not reminders): ``_kafka`` and, if enabled, ``_influxdb``.
* Every event that notifies: the receivers of its routes (:mod:`.routeconfig`): in order,
  the first route that matches and is in effect now, and the next ones while the matched
  routes say ``continue``; none matched: the default route (its receivers, else
  ``alerting.default_receivers``, else every receiver). A rule that names receivers
  goes to exactly those, with the default route's timing. With no receiver configured at
  all, notifications go to the terminal (``_console``).
* A *fired* event on a route with a ``group_window`` is held in the outbox that long under
  the group key (rule, kecamatan), so the alerts of a storm leave as one message per
  receiver; every other change (escalated, resolved, reminder) goes alone, at once.
* :func:`escalations`: an alert firing unacknowledged since its level began for a route's
  ``escalate_after`` goes to the route's ``escalate_to``; the outbox id names the alert
  episode, level and route, so it is queued once however often the tick asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from kotaflow.alert_routes import WEEKDAYS, Route, TimeWindow
from kotaflow.alerting_settings import AlertingSettings
from kotaflow.wire.alerts import AlertEvent, Change
from processors.alerting.state_store import INFLUX_DESTINATION, KAFKA_DESTINATION, Outgoing
from processors.alerting.templates import WITA

CONSOLE_DESTINATION = "_console"
DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """One route an event took: its receivers and timing."""

    name: str
    receivers: tuple[str, ...]
    group_window_ms: int = 0
    escalate_after_ms: int | None = None
    escalate_to: tuple[str, ...] = ()


def route_name(index: int, found: Route) -> str:
    return found.name or f"route-{index + 1}"


def matches(found: Route, event: AlertEvent) -> bool:
    """Whether the route's matchers all hold for the event (time of day not considered)."""
    m = found.match
    return (
        (not m.rule or any(fnmatchcase(event.rule, pattern) for pattern in m.rule))
        and all(event.labels.get(key) in values for key, values in m.labels.items())
        and (not m.level or event.level in m.level)
        and (not m.severity or event.severity.value in m.severity)
        and (not m.kecamatan or event.kecamatan in m.kecamatan)
    )


def in_window(window: TimeWindow, now_ms: int) -> bool:
    """Whether ``now_ms`` falls in the window (WITA); an overnight window belongs to the day
    it starts on."""
    moment = datetime.fromtimestamp(now_ms / 1000, WITA)
    clock = moment.time()
    today = WEEKDAYS[moment.weekday()]
    yesterday = WEEKDAYS[(moment.weekday() - 1) % 7]
    if window.start <= window.end:
        return today in window.days and window.start <= clock <= window.end
    return (today in window.days and clock >= window.start) or (
        yesterday in window.days and clock <= window.end
    )


def in_effect(found: Route, now_ms: int) -> bool:
    active = not found.active_hours or any(in_window(w, now_ms) for w in found.active_hours)
    quiet = any(in_window(w, now_ms) for w in found.quiet_hours)
    return active and not quiet


def plans(event: AlertEvent, cfg: AlertingSettings, now_ms: int) -> list[RoutePlan]:
    """The routes ``event`` takes now, in order."""
    if not cfg.receivers:
        return [RoutePlan("console", (CONSOLE_DESTINATION,))]
    if event.receivers:
        known = [r for r in event.receivers if r in cfg.receivers]
        return [_default_plan(f"rule {event.rule}", known, cfg)]
    taken: list[RoutePlan] = []
    for index, found in enumerate(cfg.routes):
        if not (matches(found, event) and in_effect(found, now_ms)):
            continue
        taken.append(
            RoutePlan(
                route_name(index, found),
                tuple(found.receivers),
                _ms(found.group_window),
                _escalate_ms(found.escalate_after),
                tuple(found.escalate_to),
            )
        )
        if not found.continue_:
            break
    if taken:
        return taken
    receivers = cfg.default_route.receivers  # [] is allowed: what no route takes, nobody hears
    if receivers is None:
        receivers = cfg.default_receivers or list(cfg.receivers)
    return [_default_plan(DEFAULT_ROUTE, receivers, cfg)]


def _default_plan(name: str, receivers: Sequence[str], cfg: AlertingSettings) -> RoutePlan:
    default = cfg.default_route
    return RoutePlan(
        name,
        tuple(receivers),
        _ms(default.group_window),
        _escalate_ms(default.escalate_after),
        tuple(default.escalate_to),
    )


def receivers_for(event: AlertEvent, cfg: AlertingSettings, now_ms: int) -> tuple[str, ...]:
    return tuple(_receivers(plans(event, cfg, now_ms)))


def group_key(event: AlertEvent) -> str:
    return f"{event.rule}|{event.kecamatan}"


def route(events: Iterable[AlertEvent], cfg: AlertingSettings, now_ms: int) -> list[Outgoing]:
    out: list[Outgoing] = []
    for event in events:
        payload = event.to_json()
        if event.published:
            out.append(Outgoing(KAFKA_DESTINATION, event.id, payload))
            if cfg.write_influx:
                out.append(Outgoing(INFLUX_DESTINATION, event.id, payload))
        if not event.notify:
            continue
        taken = plans(event, cfg, now_ms)
        for receiver, window_ms in _receivers(taken).items():
            grouped = event.change is Change.FIRED and window_ms > 0
            out.append(
                Outgoing(
                    receiver,
                    event.id,
                    payload,
                    group=group_key(event) if grouped else None,
                    hold_ms=window_ms if grouped else 0,
                    device=event.device,
                )
            )
    return out


def escalations(
    unacknowledged: Iterable[AlertEvent], cfg: AlertingSettings, now_ms: int
) -> list[Outgoing]:
    """Escalation messages due now for alerts nobody acknowledged (``Change.UNACKED``)."""
    out: list[Outgoing] = []
    for event in unacknowledged:
        payload = event.to_json()
        sent: set[str] = set()
        for plan in plans(event, cfg, now_ms):
            if plan.escalate_after_ms is None or now_ms - event.at_ms < plan.escalate_after_ms:
                continue
            for receiver in plan.escalate_to:
                if receiver not in sent:
                    sent.add(receiver)
                    out.append(Outgoing(receiver, f"{event.id}/{plan.name}", payload))
    return out


def _receivers(taken: Sequence[RoutePlan]) -> dict[str, int]:
    """Receiver -> group window of the first route naming it (each receiver once)."""
    found: dict[str, int] = {}
    for plan in taken:
        for receiver in plan.receivers:
            found.setdefault(receiver, plan.group_window_ms)
    return found


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def _escalate_ms(after: timedelta | None) -> int | None:
    return None if after is None else _ms(after)
