"""Routes, grouping, acknowledgement and escalation, per-device levels (pure logic and the
SQLite outbox; time is always passed in, never read)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from devices.fleet import load_fleet
from kotaflow.alerting_settings import AlertingSettings, TelegramReceiver, WebhookReceiver
from kotaflow.cli import app as cli_app
from kotaflow.logs import JsonFormatter
from kotaflow.settings import Settings
from kotaflow.wire.alerts import AlertEvent, Change, Severity
from processors.alerting.acks import Ack, acknowledged
from processors.alerting.checks import Known, all_problems, silence_problems
from processors.alerting.engine import Dirty, Engine
from processors.alerting.routing import escalations, plans, receivers_for, route
from processors.alerting.rules import RulesError, with_device_levels
from processors.alerting.stage import AlertStage
from processors.alerting.state_store import AlertStore, NotFiringError
from processors.alerting.templates import WITA, render_group
from tests.alerting.helpers import MIN, RIVER_RULES, reading, rules_from

RIVER = {"team": "bpbd", "hazard": "banjir"}
REMIND_10M = RIVER_RULES.replace("defaults: {repeat: 1h}", "defaults: {repeat: 10m}")


def _at(text: str) -> int:
    """A WITA wall-clock time as epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=WITA).timestamp() * 1000)


MONDAY_NOON = _at("2026-11-30 12:00")
MONDAY_NIGHT = _at("2026-11-30 23:30")
TUESDAY_EARLY = _at("2026-12-01 05:00")


def _event(
    level: str = "Awas",
    severity: Severity = Severity.CRITICAL,
    rule: str = "river",
    labels: dict[str, str] | None = None,
    kecamatan: str = "Reok",
    device: str = "rl-1",
    change: Change = Change.FIRED,
    at_ms: int = MONDAY_NOON,
    receivers: tuple[str, ...] = (),
) -> AlertEvent:
    return AlertEvent(
        id=f"{rule}/{device}/1", rule=rule, device=device, type="river_level",
        kecamatan=kecamatan, metric="water_level", unit="cm", change=change, level=level,
        previous_level=None, severity=severity, value=362.0, threshold=350.0, at_ms=at_ms,
        started_ms=at_ms, labels=RIVER if labels is None else labels, receivers=receivers,
        notify=True,
    )  # fmt: skip


def _hook(name: str) -> WebhookReceiver:
    return WebhookReceiver(kind="webhook", url=f"http://127.0.0.1:9/{name}")


def _settings(**routing: Any) -> AlertingSettings:
    names = ["camat-wa", "duty-wa", "bpbd-tg", "dlh-mail", "kalak-wa", "ops"]
    return AlertingSettings.model_validate(
        {"receivers": {n: _hook(n) for n in names}, "write_influx": False, **routing}
    )


OFFICE = _settings(
    routes=[
        {
            "name": "awas",
            "match": {"labels": {"team": "bpbd"}, "level": ["Awas"]},
            "receivers": ["camat-wa", "duty-wa"],
            "escalate_after": "15m",
            "escalate_to": ["kalak-wa"],
            "group_window": 0,
        },
        {
            "name": "bpbd-office-hours",
            "match": {"labels": {"team": "bpbd"}},
            "receivers": ["bpbd-tg"],
            "active_hours": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:30", "end": "16:00"}
            ],
        },
        {
            "name": "bpbd-after-hours",
            "match": {"labels": {"team": "bpbd"}},
            "receivers": ["duty-wa"],
        },
        {"name": "dlh", "match": {"labels": {"team": "dlh"}}, "receivers": ["dlh-mail"]},
    ],
    default_route={"receivers": ["ops"]},
)


def test_awas_reaches_two_receivers_and_waspada_one() -> None:
    assert receivers_for(_event("Awas"), OFFICE, MONDAY_NOON) == ("camat-wa", "duty-wa")
    waspada = _event("Waspada", Severity.WARNING)
    assert receivers_for(waspada, OFFICE, MONDAY_NOON) == ("bpbd-tg",)


def test_continue_goes_on_to_the_next_matching_route() -> None:
    routes = OFFICE.routes
    cont = OFFICE.model_copy(
        update={"routes": [routes[0].model_copy(update={"continue_": True}), *routes[1:]]}
    )
    assert receivers_for(_event("Awas"), cont, MONDAY_NOON) == ("camat-wa", "duty-wa", "bpbd-tg")


def test_office_hours_route_is_skipped_at_night_so_the_next_one_takes_the_alert() -> None:
    waspada = _event("Waspada", Severity.WARNING)
    assert [p.name for p in plans(waspada, OFFICE, MONDAY_NIGHT)] == ["bpbd-after-hours"]
    saturday = _at("2026-12-05 10:00")
    assert receivers_for(waspada, OFFICE, saturday) == ("duty-wa",)


def test_quiet_hours_over_midnight() -> None:
    quiet = _settings(
        routes=[
            {
                "match": {"labels": {"team": "dlh"}},
                "receivers": ["dlh-mail"],
                "quiet_hours": [{"days": ["mon"], "start": "22:00", "end": "06:00"}],
            }
        ],
        default_route={"receivers": []},
    )
    ispu = _event("Tidak Sehat", Severity.WARNING, rule="ispu_pm25", labels={"team": "dlh"})
    assert receivers_for(ispu, quiet, MONDAY_NOON) == ("dlh-mail",)
    assert receivers_for(ispu, quiet, MONDAY_NIGHT) == ()  # the default route: nobody
    assert [p.name for p in plans(ispu, quiet, MONDAY_NIGHT)] == ["default"]
    assert [p.name for p in plans(ispu, quiet, TUESDAY_EARLY)] == ["default"]  # still Monday's


def test_match_on_rule_pattern_severity_and_kecamatan() -> None:
    cfg = _settings(
        routes=[
            {"match": {"rule": ["hujan_*"], "kecamatan": ["Reok"]}, "receivers": ["camat-wa"]},
            {"match": {"severity": ["critical"]}, "receivers": ["duty-wa"]},
        ]
    )
    rain = _event("Hujan lebat", Severity.WARNING, rule="hujan_per_jam", labels={})
    assert receivers_for(rain, cfg, MONDAY_NOON) == ("camat-wa",)
    elsewhere = replace(rain, kecamatan="Ruteng")
    assert [p.name for p in plans(elsewhere, cfg, MONDAY_NOON)] == ["default"]
    assert receivers_for(_event(labels={}), cfg, MONDAY_NOON) == ("duty-wa",)


def test_a_rule_naming_receivers_goes_to_exactly_those() -> None:
    event = _event(receivers=("dlh-mail",))
    assert receivers_for(event, OFFICE, MONDAY_NOON) == ("dlh-mail",)


def test_unknown_receiver_in_a_route_is_refused_at_load() -> None:
    with pytest.raises(ValidationError, match=r"routes\[0\].receivers: 'camat-wa'"):
        AlertingSettings.model_validate(
            {"receivers": {"ops": _hook("ops")}, "routes": [{"receivers": ["camat-wa"]}]}
        )


def test_check_finds_routes_matching_nothing_missing_secrets_and_typos(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path, RIVER_RULES.replace("    levels:", "    labels: {team: bpbd}\n    levels:")
    )
    cfg = AlertingSettings.model_validate(
        {
            "receivers": {"tg": TelegramReceiver(kind="telegram", chat_id="-1"), "ops": _hook("o")},
            "routes": [
                {"match": {"labels": {"team": "bpdb"}}, "receivers": ["ops"]},
                {"match": {"level": ["Awas"], "kecamatan": ["Reokk"]}, "receivers": ["ops"]},
                {"match": {"labels": {"team": "bpbd"}, "level": ["Siaga"]}, "receivers": ["ops"]},
                {"receivers": ["ops"], "escalate_to": ["ops"]},
            ],
        }
    )
    known = Known(frozenset({"Reok", "Ruteng"}), frozenset({"rl-1"}), frozenset({"river_level"}))
    problems = all_problems(cfg, rules, known)
    assert any("'tg': Telegram bot token missing" in p for p in problems)
    assert any("routes[0] (route-1): matches no alert" in p for p in problems)
    assert any("routes[1] (route-2): unknown kecamatan 'Reokk': did you mean 'Reok'?" in p
               for p in problems)  # fmt: skip
    assert not any("routes[2]" in p for p in problems)
    assert any("routes[3] (route-4): escalate_to without escalate_after" in p for p in problems)
    silence = silence_problems(
        known, rules, rule=None, device="rl-*", kecamatan="Reokk", type_=None
    )
    assert silence == ["unknown kecamatan 'Reokk': did you mean 'Reok'?"]
    assert silence_problems(
        known, rules, rule="sungai", device="x-*", kecamatan=None, type_="rl"
    ) == [
        "device pattern 'x-*' matches none",
        "unknown device type 'rl'",
        "unknown rule 'sungai'",
    ]


# -- grouping ----------------------------------------------------------------------------


def _grouped_settings(window: str = "2m") -> AlertingSettings:
    return _settings(default_route={"receivers": ["bpbd-tg", "ops"], "group_window": window})


def test_storm_over_five_gauges_is_one_message_per_receiver(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    cfg = _grouped_settings()
    t = MONDAY_NOON
    for i in range(5):  # five gauges of Reok within a minute
        event = replace(_event(device=f"rl-{i}"), id=f"river/rl-{i}/1", at_ms=t + i * 12_000)
        store.save(Dirty(), {}, route([event], cfg, t + i * 12_000), t + i * 12_000)
    other = replace(_event(device="rt-1", kecamatan="Ruteng"), id="river/rt-1/1")
    store.save(Dirty(), {}, route([other], cfg, t + 30_000), t + 30_000)
    assert store.next_batch("bpbd-tg", 1, now_ms=t + 119_000) == []  # the window is open
    batch = store.next_batch("bpbd-tg", 1, now_ms=t + 120_000)
    assert [i.event_id for i in batch] == [f"river/rl-{i}/1" for i in range(5)]
    assert [i.event_id for i in store.next_batch("ops", 1, now_ms=t + 120_000)] == [
        f"river/rl-{i}/1" for i in range(5)
    ]
    assert store.next_hold_ms("bpbd-tg", t + 120_000) == t + 150_000  # Ruteng's own group
    store.delivered([i.id for i in batch], t + 120_000)
    assert store.next_batch("bpbd-tg", 1, now_ms=t + 120_000) == []
    message = render_group(
        [AlertEvent.from_json(i.payload) for i in batch], OFFICE.receivers["ops"].language, {}, None
    )
    assert message.title == "[AWAS] river: 5 perangkat di Kecamatan Reok"
    assert all(f"(rl-{i}): 362 cm, Awas" in message.text for i in range(5))


def test_a_later_change_of_a_member_goes_alone_after_its_group(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    cfg = _grouped_settings()
    t = MONDAY_NOON
    store.save(Dirty(), {}, route([_event(device="rl-1")], cfg, t), t)
    store.save(Dirty(), {}, route([replace(_event(device="rl-2"), id="river/rl-2/1")], cfg, t), t)
    resolved = replace(_event(device="rl-1", change=Change.RESOLVED), id="river/rl-1/2")
    store.save(Dirty(), {}, route([resolved], cfg, t + MIN), t + MIN)  # while the group waits
    assert store.next_batch("ops", 1, now_ms=t + MIN) == []  # not before its firing
    group = store.next_batch("ops", 1, now_ms=t + 2 * MIN)
    assert [i.event_id for i in group] == ["river/rl-1/1", "river/rl-2/1"]
    store.delivered([i.id for i in group], t + 2 * MIN)
    alone = store.next_batch("ops", 1, now_ms=t + 2 * MIN)
    assert [i.event_id for i in alone] == ["river/rl-1/2"]
    # after the window, the next firing opens a group of its own
    later = replace(_event(device="rl-3"), id="river/rl-3/1")
    store.save(Dirty(), {}, route([later], cfg, t + 3 * MIN), t + 3 * MIN)
    assert store.next_hold_ms("ops", t + 3 * MIN) == t + 5 * MIN


def test_group_window_zero_sends_at_once(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    store.save(Dirty(), {}, route([_event()], _grouped_settings("0s"), MONDAY_NOON), MONDAY_NOON)
    assert len(store.next_batch("ops", 1, now_ms=MONDAY_NOON)) == 1


# -- acknowledgement and escalation ------------------------------------------------------


def _firing_engine(tmp_path: Path, t: int) -> Engine:
    engine = Engine(rules_from(tmp_path, REMIND_10M), t)
    engine.apply(reading("rl-1", "water_level", 360, t), 0, t, [])
    assert engine.states[("river", "rl-1")].level == 2  # Awas
    return engine


def test_unacknowledged_awas_escalates_after_the_delay_once(tmp_path: Path) -> None:
    t = MONDAY_NOON
    engine = _firing_engine(tmp_path, t)
    due = escalations(engine.unacknowledged(t + 14 * MIN, [], {}), _office_rules(), t + 14 * MIN)
    assert due == []
    found = escalations(engine.unacknowledged(t + 15 * MIN, [], {}), _office_rules(), t + 15 * MIN)
    assert [(o.destination, o.payload["change"]) for o in found] == [("kalak-wa", "unacknowledged")]
    again = escalations(engine.unacknowledged(t + 20 * MIN, [], {}), _office_rules(), t + 20 * MIN)
    assert [o.event_id for o in again] == [o.event_id for o in found]  # same outbox row: once


def test_acknowledged_alert_neither_escalates_nor_reminds_until_its_level_rises(
    tmp_path: Path,
) -> None:
    t = MONDAY_NOON
    engine = Engine(rules_from(tmp_path, REMIND_10M), t)
    engine.apply(reading("rl-1", "water_level", 260, t), 0, t, [])
    engine.tick(t + 5 * MIN, [])  # Siaga after its for
    state = engine.states[("river", "rl-1")]
    assert state.level == 1
    ack = {("river", "rl-1"): Ack("river", "rl-1", state.started_ms or 0, "Siaga", "Yos", "", t)}
    assert acknowledged(ack[("river", "rl-1")], state, engine.rules.rules[0].levels)
    reminders = engine.tick(t + 30 * MIN, [], ack)
    assert reminders == []
    assert engine.unacknowledged(t + 30 * MIN, [], ack) == []
    # the river rises to Awas: the acknowledgement no longer covers it
    events = engine.apply(reading("rl-1", "water_level", 360, t + 31 * MIN), 0, t + 31 * MIN, [])
    assert [e.change for e in events] == [Change.ESCALATED]
    assert [e.level for e in engine.unacknowledged(t + 31 * MIN, [], ack)] == ["Awas"]
    assert [e.change for e in engine.tick(t + 42 * MIN, [], ack)] == [Change.REMINDER]


def test_ack_is_durable_and_refused_for_an_alert_that_is_not_firing(tmp_path: Path) -> None:
    t = MONDAY_NOON
    engine = _firing_engine(tmp_path, t)
    store = AlertStore(tmp_path / "state.sqlite3")
    store.save(engine.take_dirty(), {"rl-1": 0}, [], t)
    with pytest.raises(NotFiringError):
        store.acknowledge("river", "rl-9", "Yos", "", t)
    store.acknowledge("river", "rl-1", "Yos", "TRC menuju lokasi", t + MIN)
    reopened = AlertStore(tmp_path / "state.sqlite3")
    (ack,) = reopened.acks().values()
    assert (ack.level, ack.by, ack.note, ack.at_ms) == ("Awas", "Yos", "TRC menuju lokasi", t + MIN)
    assert engine.unacknowledged(t + 20 * MIN, [], reopened.acks()) == []


def _office_rules() -> AlertingSettings:
    """OFFICE, with the test rules' labels-free alerts routed like BPBD's."""
    first = OFFICE.routes[0].model_copy(update={"match": OFFICE.routes[0].match.model_copy(
        update={"labels": {}})})  # fmt: skip
    return OFFICE.model_copy(update={"routes": [first]})


# -- per-device levels -------------------------------------------------------------------


def test_a_gauge_with_its_own_four_levels_fires_and_clears_at_its_own_values(
    tmp_path: Path,
) -> None:
    fleet = load_fleet()
    rules = with_device_levels(
        rules_from(tmp_path, RIVER_RULES.replace("name: river", "name: tinggi_muka_air")),
        fleet.registry,
    )
    engine = Engine(rules, MONDAY_NOON)
    t = MONDAY_NOON
    seen = []
    for i, cm in enumerate([100, 125, 185, 245, 305, 295, 285, 225, 165, 105]):
        for ts in (t + i * 20 * MIN, t + i * 20 * MIN + 10 * MIN):  # each level's for passes
            for event in engine.apply(reading("reo-rl-01", "water_level", cm, ts), 0, ts, []):
                seen.append((event.change.value, event.level, event.threshold))
            seen += [(e.change.value, e.level, e.threshold) for e in engine.tick(ts, [])]
    assert seen == [
        ("fired", "Siaga IV", 120),
        ("escalated", "Siaga III", 180),
        ("escalated", "Siaga II", 240),
        ("escalated", "Siaga I", 300),
        ("deescalated", "Siaga II", 240),  # below Siaga I's clear value, 290
        ("deescalated", "Siaga III", 180),
        ("deescalated", "Siaga IV", 120),
        ("resolved", "Siaga IV", 110),
    ]
    other = engine.apply(reading("reo-rl-02", "water_level", 160, t), 0, t, [])
    assert [(e.level, e.threshold) for e in other] == [("Waspada", 150)]  # the rule's own


def _moved_levels(tmp_path: Path, old: str, new: str) -> Any:
    """The sample fleet with one edit in the registry text (a level moved after a survey)."""
    registry = tmp_path / "registry.yaml"
    text = Path("devices/registry.yaml").read_text(encoding="utf-8")
    assert old in text
    registry.write_text(text.replace(old, new), encoding="utf-8")
    return load_fleet(registry_file=registry).registry


def test_new_device_levels_apply_to_a_firing_alert_without_losing_it(tmp_path: Path) -> None:
    base = rules_from(tmp_path, RIVER_RULES.replace("name: river", "name: tinggi_muka_air"))
    engine = Engine(with_device_levels(base, load_fleet().registry), MONDAY_NOON)
    t = MONDAY_NOON
    fired = engine.apply(reading("reo-rl-01", "water_level", 245, t), 0, t, [])
    assert [(e.change.value, e.level) for e in fired] == [("fired", "Siaga II")]
    moved = _moved_levels(
        tmp_path,
        "{name: Siaga II, at_least: 240, clear_below: 230",
        "{name: Siaga II, at_least: 260, clear_below: 250",
    )
    engine.use_rules(with_device_levels(base, moved))
    assert [s.level for s in engine.states.values()] == [2]  # still firing, same level
    t += MIN
    after = engine.apply(reading("reo-rl-01", "water_level", 245, t), 0, t, [])
    assert [(e.change.value, e.level, e.threshold) for e in after] == [
        ("deescalated", "Siaga III", 180)  # 245 is below Siaga II's new clear value, 250
    ]


def test_a_renamed_level_keeps_a_firing_alert_at_its_position(tmp_path: Path) -> None:
    base = rules_from(tmp_path, RIVER_RULES.replace("name: river", "name: tinggi_muka_air"))
    engine = Engine(with_device_levels(base, load_fleet().registry), MONDAY_NOON)
    t = MONDAY_NOON
    engine.apply(reading("reo-rl-01", "water_level", 245, t), 0, t, [])
    renamed = _moved_levels(tmp_path, "{name: Siaga II,", "{name: Siaga 2,")
    engine.use_rules(with_device_levels(base, renamed))
    (state,) = engine.states.values()
    assert state.level == state.notified_level == 2
    t += MIN
    resolved = engine.apply(reading("reo-rl-01", "water_level", 100, t), 0, t, [])
    assert [(e.change.value, e.level) for e in resolved] == [("resolved", "Siaga 2")]


def test_device_levels_are_checked_with_the_registry_line(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    text = Path("devices/registry.yaml").read_text(encoding="utf-8")
    registry.write_text(
        text.replace("at_least: 300, clear_below: 290", "at_least: 200, clear_below: 290"),
        encoding="utf-8",
    )
    fleet = load_fleet(registry_file=registry)
    rules = rules_from(tmp_path, RIVER_RULES.replace("name: river", "name: tinggi_muka_air"))
    with pytest.raises(RulesError) as caught:
        with_device_levels(rules, fleet.registry)
    (problem,) = caught.value.problems
    assert problem.file == str(registry)
    assert problem.line > 1
    assert "devices[" in problem.field
    assert "tinggi_muka_air" in problem.field


# -- the command line --------------------------------------------------------------------


def test_a_silence_for_a_misspelt_kecamatan_is_refused_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOTAFLOW_ALERTING__STATE_DIR", str(tmp_path))
    args = ["alerts", "silence", "add", "--kecamatan", "Reokk", "--duration", "1h", "-m", "x"]
    refused = CliRunner().invoke(cli_app, args)
    assert refused.exit_code == 2
    assert "unknown kecamatan 'Reokk': did you mean 'Reok'?" in refused.output
    assert AlertStore(tmp_path / "alerting.sqlite3").silences() == []
    accepted = CliRunner().invoke(cli_app, [*args[:4], "Reok", *args[5:]])
    assert accepted.exit_code == 0, accepted.output


def test_routes_test_shows_the_receivers_an_alert_would_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kotaflow.yaml"
    config.write_text(
        yaml.safe_dump(
            {"alerting": OFFICE.model_dump(mode="json", include={"routes", "default_route"})
             | {"receivers": {n: {"kind": "webhook", "url": "http://127.0.0.1:9/x"}
                              for n in OFFICE.receivers}}},
        )
    , encoding="utf-8")  # fmt: skip
    monkeypatch.setenv("KOTAFLOW_CONFIG", str(config))
    args = ["alerts", "routes", "test", "--rule", "tinggi_muka_air", "--kecamatan", "Reok"]
    awas = CliRunner().invoke(cli_app, [*args, "--level", "Awas", "--at", "2026-11-30 12:00"])
    assert awas.exit_code == 0, awas.output
    assert "awas: camat-wa, duty-wa, unacknowledged 15 min -> kalak-wa" in awas.output
    assert "receivers: camat-wa, duty-wa" in awas.output
    night = CliRunner().invoke(cli_app, [*args, "--level", "Waspada", "--at", "2026-11-30 23:00"])
    assert "receivers: duty-wa" in night.output
    own = CliRunner().invoke(cli_app, [*args, "--level", "Siaga I", "--at", "2026-11-30 09:00"])
    assert "receivers: bpbd-tg" in own.output  # a gauge's own level (reo-rl-01)


def test_routes_test_refuses_a_misspelt_kecamatan_and_an_unknown_severity() -> None:
    args = ["alerts", "routes", "test", "--rule", "tinggi_muka_air"]
    misspelt = CliRunner().invoke(cli_app, [*args, "--kecamatan", "Reokk"])
    assert misspelt.exit_code == 2
    assert "unknown kecamatan 'Reokk': did you mean 'Reok'?" in misspelt.output
    severity = CliRunner().invoke(cli_app, [*args, "--severity", "huge"])
    assert severity.exit_code == 2  # a usage error naming the choices, not a traceback
    assert severity.exception is None or isinstance(severity.exception, SystemExit)
    assert "critical" in severity.output
    chosen = CliRunner().invoke(cli_app, [*args, "--severity", "critical"])
    assert chosen.exit_code == 0, chosen.output


@pytest.mark.asyncio
async def test_an_alert_log_line_keeps_the_log_level_and_names_the_alert_level(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = settings.alerting.model_copy(update={"state_dir": tmp_path, "write_influx": False})
    store = AlertStore(tmp_path / "alerting.sqlite3")
    engine = Engine(rules_from(tmp_path, RIVER_RULES), MONDAY_NOON)
    stage = AlertStage(settings.model_copy(update={"alerting": cfg}), engine, store, lambda: None)
    stage._events = [_event()]  # as handle() leaves them for flush()
    with caplog.at_level(logging.INFO, logger="kotaflow.alerting.stage"):
        await stage.flush()
    (record,) = [r for r in caplog.records if r.getMessage() == "alert"]
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["alert_level"]) == ("info", "Awas")
