"""The sample rules' no-data coverage of edge gateways: a gateway silent for 10 minutes fires
``gateway_senyap`` (team teknis, routed like the other device-health alerts); the general
``perangkat_senyap`` leaves gateways to it and keeps watching the devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.catalogue import load_catalogue
from kotaflow.alerting_settings import AlertingSettings, WebhookReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.engine import Engine
from processors.alerting.routing import receivers_for
from processors.alerting.rules import PACKAGED_RULES, RulesError, load_rules
from tests.alerting.helpers import MIN, T0, reading, write_rules

GATEWAY, DEVICE = "reo-gw-01", "reo-wx-01"


def _engine() -> Engine:
    catalogue = load_catalogue()
    rules = load_rules(PACKAGED_RULES, metrics=catalogue.metrics, types=catalogue.types)
    engine = Engine(rules, started_ms=T0)
    _gateway_reports(engine, T0)
    engine.apply(reading(DEVICE, "temperature", 29.0, T0, "weather", unit="Cel"), 0, T0, [])
    return engine


def _gateway_reports(engine: Engine, ts: int) -> list[AlertEvent]:
    gateway = reading(GATEWAY, "queue_messages", 0.0, ts, "gateway", unit="count")
    return engine.apply(gateway, 0, ts, [])


def _fired(events: list[AlertEvent]) -> list[tuple[str, str]]:
    return [(e.rule, e.device) for e in events if e.change.value == "fired"]


def test_a_gateway_silent_for_ten_minutes_fires_and_resolves_when_it_reports() -> None:
    engine = _engine()
    assert _fired(engine.tick(T0 + 9 * MIN, [])) == []
    fired = engine.tick(T0 + 11 * MIN, [])
    assert _fired(fired) == [("gateway_senyap", GATEWAY)]
    assert fired[0].labels["team"] == "teknis"
    assert fired[0].nodata
    resolved = _gateway_reports(engine, T0 + 12 * MIN)
    assert [(e.rule, e.change.value) for e in resolved] == [("gateway_senyap", "resolved")]


def test_the_device_rule_leaves_gateways_to_their_own_rule() -> None:
    engine = _engine()
    events: list[AlertEvent] = []
    for minute in range(1, 50):
        events += engine.tick(T0 + minute * MIN, [])
    assert _fired(events) == [("gateway_senyap", GATEWAY), ("perangkat_senyap", DEVICE)]


def test_a_silent_gateway_reaches_the_teknis_route() -> None:
    hooks = {n: WebhookReceiver(kind="webhook", url=f"http://127.0.0.1:9/{n}") for n in "ab"}
    settings = AlertingSettings.model_validate(
        {
            "receivers": {"teknis-tg": hooks["a"], "ops": hooks["b"]},
            "write_influx": False,
            "routes": [{"match": {"labels": {"team": "teknis"}}, "receivers": ["teknis-tg"]}],
            "default_route": {"receivers": ["ops"]},
        }
    )
    engine = _engine()
    (event,) = engine.tick(T0 + 11 * MIN, [])
    assert receivers_for(event, settings, T0 + 11 * MIN) == ("teknis-tg",)


def test_exclude_types_names_catalogue_types(tmp_path: Path) -> None:
    path = write_rules(
        tmp_path,
        """
        version: 1
        rules:
          - name: silent
            kind: nodata
            scope: {exclude_types: [gatway]}
            for: 10m
        """,
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path, types={"gateway"})
    assert [(p.line, p.field) for p in caught.value.problems] == [
        (5, "rules[0].scope.exclude_types[0]")
    ]
