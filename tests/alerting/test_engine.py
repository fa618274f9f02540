"""The alert state machine: levels, hysteresis, for-durations, windows, no-data, reminders,
silences and restarts (pure logic, no services)."""

from __future__ import annotations

from pathlib import Path

from kotaflow.wire.alerts import AlertEvent, Change
from processors.alerting.engine import Engine
from processors.alerting.silences import Silence
from tests.alerting.helpers import MIN, RIVER_RULES, T0, reading, rules_from


def _changes(events: list[AlertEvent]) -> list[tuple[str, str, bool]]:
    return [(e.change.value, e.level, e.notify) for e in events]


def _feed(
    engine: Engine, values: list[tuple[int, float]], device: str = "rl-1"
) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for ts, value in values:
        events += engine.apply(reading(device, "water_level", value, ts), 0, ts, [])
    return events


def test_threshold_fires_escalates_and_resolves_with_hysteresis(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    events = _feed(engine, [(T0, 100), (T0 + MIN, 155), (T0 + 2 * MIN, 145), (T0 + 3 * MIN, 139)])
    assert _changes(events) == [("fired", "Waspada", True), ("resolved", "Waspada", True)]
    fired = events[0]
    assert (fired.value, fired.threshold, fired.severity.value) == (155, 150, "warning")
    assert events[1].threshold == 140  # the clear value


def test_value_hovering_at_threshold_does_not_flap(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    hovering = [(T0 + i * MIN, 150 + (-1) ** i * 3) for i in range(10)]  # 153, 147, 153, ...
    events = _feed(engine, hovering)
    assert _changes(events) == [("fired", "Waspada", True)]


def test_level_with_for_waits_then_fires_on_reading(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    events = _feed(engine, [(T0, 260), (T0 + 2 * MIN, 262)])
    # Waspada (no for) fires at once; Siaga waits its 5 minutes
    assert _changes(events) == [("fired", "Waspada", True)]
    events = _feed(engine, [(T0 + 5 * MIN, 265)])
    assert _changes(events) == [("escalated", "Siaga", True)]
    assert events[0].previous_level == "Waspada"


def test_pending_level_fires_on_the_wall_clock_tick(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    _feed(engine, [(T0, 260)])
    assert engine.tick(T0 + 4 * MIN, []) == []
    assert _changes(engine.tick(T0 + 5 * MIN, [])) == [("escalated", "Siaga", True)]


def test_pending_is_cancelled_when_value_drops_back(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    _feed(engine, [(T0, 260), (T0 + MIN, 200)])
    assert engine.tick(T0 + 10 * MIN, []) == []


def test_jump_straight_to_top_level_then_down_step_by_step(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    events = _feed(engine, [(T0, 400), (T0 + 5 * MIN, 400), (T0 + 6 * MIN, 300), (T0 + 7 * MIN, 0)])
    # Awas has no `for`: an emergency is not held back by Siaga's 5 minutes
    assert _changes(events) == [
        ("fired", "Awas", True),
        ("deescalated", "Siaga", True),
        ("resolved", "Siaga", True),
    ]


def test_replayed_reading_changes_nothing(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    first = _feed(engine, [(T0, 100), (T0 + MIN, 160)])
    assert len(first) == 1
    assert _feed(engine, [(T0, 100), (T0 + MIN, 160)]) == []


def test_late_reading_does_not_move_state_back(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    _feed(engine, [(T0 + 2 * MIN, 160)])
    assert _feed(engine, [(T0 + MIN, 100)]) == []


def test_rate_of_change_rise_over_window(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        version: 1
        rules:
          - name: rising
            kind: rate
            metric: water_level
            change: rise
            over: 15m
            levels: [{name: Naik cepat, at_least: 30, clear_below: 15}]
        """,
    )
    engine = Engine(rules, started_ms=T0)
    slow = [(T0 + i * 5 * MIN, 100 + i * 5) for i in range(6)]  # 5 cm per 5 min
    assert _feed(engine, slow) == []
    fast = _feed(engine, [(T0 + 30 * MIN, 140), (T0 + 35 * MIN, 160)])
    assert _changes(fast) == [("fired", "Naik cepat", True)]
    assert fast[0].value == 35  # 160 - min(125..160) within 15 min
    steady = _feed(engine, [(T0 + 50 * MIN + i * 5 * MIN, 160) for i in range(4)])
    assert _changes(steady) == [("resolved", "Naik cepat", True)]


def test_rain_sum_over_one_hour_window_slides(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        version: 1
        rules:
          - name: rain_1h
            kind: aggregate
            metric: rain
            function: sum
            over: 1h
            levels:
              - {name: Lebat, at_least: 10, clear_below: 8}
              - {name: Sangat lebat, at_least: 20, clear_below: 17}
        """,
    )
    engine = Engine(rules, started_ms=T0)

    def rain(ts: int, mm: float) -> list[AlertEvent]:
        r = reading("rg-1", "rain", mm, ts, type_="rain_gauge", unit="mm")
        return engine.apply(r, 1, ts, [])

    events: list[AlertEvent] = []
    for i in range(12):  # 2 mm every 5 min: 24 mm in the hour
        events += rain(T0 + i * 5 * MIN, 2.0)
    assert [(e.change, e.level) for e in events] == [
        (Change.FIRED, "Lebat"),
        (Change.ESCALATED, "Sangat lebat"),
    ]
    assert events[0].value == 10.0
    # dry hour: the window slides and the sum falls below each clear value in turn
    later: list[AlertEvent] = []
    for i in range(12, 26):
        later += rain(T0 + i * 5 * MIN, 0.0)
    assert [(e.change, e.level) for e in later] == [
        (Change.DEESCALATED, "Lebat"),
        (Change.RESOLVED, "Lebat"),
    ]


def test_nodata_fires_on_tick_and_resolves_on_data(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        version: 1
        rules:
          - name: silent
            kind: nodata
            for: 30m
            level: Senyap
        """,
    )
    engine = Engine(rules, started_ms=T0)
    _feed(engine, [(T0, 100)])
    assert engine.tick(T0 + 29 * MIN, []) == []
    fired = engine.tick(T0 + 31 * MIN, [])
    assert _changes(fired) == [("fired", "Senyap", True)]
    assert fired[0].nodata
    assert fired[0].last_seen_ms == T0
    assert engine.tick(T0 + 32 * MIN, []) == []  # no repeat before the repeat interval
    assert _changes(_feed(engine, [(T0 + 40 * MIN, 100)])) == [("resolved", "Senyap", True)]


def test_nodata_counts_from_start_up_after_a_restart(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        version: 1
        rules: [{name: silent, kind: nodata, for: 30m}]
        """,
    )
    before = Engine(rules, started_ms=T0)
    _feed(before, [(T0, 100)])
    dirty = before.take_dirty()
    after = Engine(rules, started_ms=T0 + 60 * MIN)  # down for an hour
    after.load(dirty.devices.items(), dirty.series.items(), dirty.states.items())
    assert after.tick(T0 + 61 * MIN, []) == []
    assert len(after.tick(T0 + 91 * MIN, [])) == 1


def test_reminder_after_repeat_interval(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    _feed(engine, [(T0, 160)])
    assert engine.tick(T0 + 59 * MIN, []) == []
    reminder = engine.tick(T0 + 60 * MIN, [])
    assert _changes(reminder) == [("reminder", "Waspada", True)]
    assert not reminder[0].published
    assert engine.tick(T0 + 61 * MIN, []) == []


def test_silenced_alert_changes_state_but_does_not_notify(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    silence = Silence("s1", T0, T0 + 30 * MIN, "op", "maintenance", T0, device="rl-*")
    events = engine.apply(reading("rl-1", "water_level", 160, T0), 0, T0, [silence])
    assert _changes(events) == [("fired", "Waspada", False)]
    assert events[0].silenced_by == "s1"
    assert events[0].published
    assert engine.tick(T0 + 10 * MIN, [silence]) == []
    # once the silence is over, the still-firing alert is notified once
    after = engine.tick(T0 + 31 * MIN, [silence])
    assert _changes(after) == [("reminder", "Waspada", True)]
    assert engine.tick(T0 + 32 * MIN, [silence]) == []


def test_resolution_of_an_unnotified_alert_is_not_sent(tmp_path: Path) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0)
    silence = Silence("s1", T0, T0 + 30 * MIN, "op", "", T0, rule="river")
    engine.apply(reading("rl-1", "water_level", 160, T0), 0, T0, [silence])
    events = engine.apply(reading("rl-1", "water_level", 100, T0 + MIN), 0, T0 + MIN, [])
    assert _changes(events) == [("resolved", "Waspada", False)]


def test_restart_from_saved_state_does_not_renotify(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, RIVER_RULES)
    before = Engine(rules, started_ms=T0)
    assert len(_feed(before, [(T0, 160)])) == 1
    dirty = before.take_dirty()
    after = Engine(rules, started_ms=T0 + MIN)
    after.load(dirty.devices.items(), dirty.series.items(), dirty.states.items())
    assert _feed(after, [(T0 + 2 * MIN, 165)]) == []
    assert after.tick(T0 + 3 * MIN, []) == []
    resolved = _feed(after, [(T0 + 4 * MIN, 100)])
    assert _changes(resolved) == [("resolved", "Waspada", True)]
    assert resolved[0].id == "river/rl-1/2"


def test_scope_by_type_kecamatan_and_device(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        version: 1
        rules:
          - name: reok_only
            kind: threshold
            metric: water_level
            scope: {types: [river_level], kecamatan: [Reok], exclude_devices: [rl-9]}
            levels: [{name: High, at_least: 1}]
        """,
    )
    engine = Engine(rules, started_ms=T0)
    assert engine.apply(reading("rl-1", "water_level", 5, T0, kecamatan="Cibal"), 0, T0, []) == []
    assert engine.apply(reading("rl-9", "water_level", 5, T0), 0, T0, []) == []
    assert engine.apply(reading("wx-1", "water_level", 5, T0, type_="weather"), 0, T0, []) == []
    assert len(engine.apply(reading("rl-2", "water_level", 5, T0), 0, T0, [])) == 1


def test_below_direction_levels(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        version: 1
        rules:
          - name: battery
            kind: threshold
            metric: battery
            levels: [{name: Lemah, at_most: 3.3, clear_above: 3.5}]
        """,
    )
    engine = Engine(rules, started_ms=T0)

    def volts(ts: int, v: float) -> list[AlertEvent]:
        return engine.apply(reading("rl-1", "battery", v, ts, unit="V"), 0, ts, [])

    assert volts(T0, 3.6) == []
    assert [e.change for e in volts(T0 + 1, 3.2)] == [Change.FIRED]
    assert volts(T0 + 2, 3.4) == []
    assert [e.change for e in volts(T0 + 3, 3.6)] == [Change.RESOLVED]


def test_backlog_transitions_are_recorded_not_notified_then_current_state_is(
    tmp_path: Path,
) -> None:
    engine = Engine(rules_from(tmp_path, RIVER_RULES), started_ms=T0 + 120 * MIN, caught_up=set())
    now = T0 + 120 * MIN  # replaying readings two hours old
    old = [(T0, 160), (T0 + MIN, 100), (T0 + 2 * MIN, 170)]
    events = [
        e for ts, v in old for e in engine.apply(reading("rl-1", "water_level", v, ts), 0, now, [])
    ]
    assert _changes(events) == [
        ("fired", "Waspada", False),
        ("resolved", "Waspada", False),
        ("fired", "Waspada", False),
    ]
    assert engine.tick(now, []) == []  # still replaying partition 0
    engine.caught_up = {0}
    assert _changes(engine.tick(now + 1000, [])) == [("reminder", "Waspada", True)]
