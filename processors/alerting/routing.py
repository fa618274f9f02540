"""Which destinations an alert event goes to (pure).

* Every published event (not reminders): ``_kafka`` and, if enabled, ``_influxdb``.
* Every event that notifies: the rule's receivers; a rule naming none goes to
  ``alerting.default_receivers``, else to every configured receiver. With no receiver
  configured at all, notifications go to the terminal (``_console``).
"""

from __future__ import annotations

from collections.abc import Iterable

from kotaflow.alerting_settings import AlertingSettings
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.state_store import INFLUX_DESTINATION, KAFKA_DESTINATION, Outgoing

CONSOLE_DESTINATION = "_console"


def receivers_for(event: AlertEvent, cfg: AlertingSettings) -> tuple[str, ...]:
    if not cfg.receivers:
        return (CONSOLE_DESTINATION,)
    if event.receivers:
        return tuple(r for r in event.receivers if r in cfg.receivers)
    return tuple(cfg.default_receivers) or tuple(cfg.receivers)


def route(events: Iterable[AlertEvent], cfg: AlertingSettings) -> list[Outgoing]:
    out: list[Outgoing] = []
    for event in events:
        payload = event.to_json()
        if event.published:
            out.append(Outgoing(KAFKA_DESTINATION, event.id, payload))
            if cfg.write_influx:
                out.append(Outgoing(INFLUX_DESTINATION, event.id, payload))
        if event.notify:
            out += [Outgoing(name, event.id, payload) for name in receivers_for(event, cfg)]
    return out
