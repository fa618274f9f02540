"""Rule files: the sample set is valid against the catalogue; bad files give file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.catalogue import load_catalogue
from kotaflow.durations import parse_duration
from processors.alerting.model import Direction, RuleKind, SignalKind
from processors.alerting.rules import PACKAGED_RULES, RulesError, load_rules
from tests.alerting.helpers import write_rules


def test_sample_manggarai_rules_are_valid_against_the_catalogue() -> None:
    catalogue = load_catalogue()
    rules = load_rules(PACKAGED_RULES, metrics=catalogue.metrics, types=catalogue.types)
    names = {rule.name: rule for rule in rules.rules}
    river = names["tinggi_muka_air"]
    assert [level.name for level in river.levels] == ["Waspada", "Siaga", "Awas"]
    assert names["sungai_naik_cepat"].signal.kind is SignalKind.RISE
    hourly, daily = names["hujan_per_jam"], names["hujan_per_hari"]
    assert (hourly.signal.window_ms, daily.signal.window_ms) == (3_600_000, 86_400_000)
    assert [lvl.trigger for lvl in daily.levels] == [50, 100, 150]  # BMKG lebat / sangat / ekstrem
    assert [lvl.trigger for lvl in hourly.levels] == [5, 10, 20]
    assert [lvl.trigger for lvl in names["ispu_pm25"].levels] == [55.5, 150.5, 250.5]
    assert names["perangkat_senyap"].kind is RuleKind.NODATA
    assert names["baterai_lemah"].direction is Direction.BELOW


def test_every_problem_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = write_rules(
        tmp_path,
        """
        version: 1
        rules:
          - name: river
            kind: threshold
            metric: water_level
            levels:
              - {name: W, at_least: 150, clear_below: 160}
          - name: rising
            kind: rate
            metric: water_level
            change: up
            over: 15x
            levels: [{name: X, at_least: 1}]
          - name: bogus
            kind: sometimes
          - name: silent
            kind: nodata
            for: 30m
            colour: red
        """,
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    found = [(p.line, p.field, p.reason) for p in caught.value.problems]
    assert found[0] == (
        7,
        "rules[0].levels[0]",
        "clear_below must not be above at_least (hysteresis)",
    )
    assert found[1][:2] == (11, "rules[1].change")
    assert found[2][:2] == (12, "rules[1].over")
    assert "15x" in found[2][2]
    assert found[3][:2] == (14, "rules[2]")
    assert "sometimes" in found[3][2]
    assert found[4][:2] == (19, "rules[3].colour")
    assert str(caught.value).startswith(f"{path}:7: rules[0].levels[0]: ")


def test_cross_checks_catalogue_receivers_order_and_names(tmp_path: Path) -> None:
    path = write_rules(
        tmp_path,
        """
        version: 1
        rules:
          - name: river
            kind: threshold
            metric: water_levl
            scope: {types: [submarine]}
            receivers: [nobody]
            levels:
              - {name: Siaga, at_least: 250}
              - {name: Waspada, at_least: 150}
          - name: river
            kind: nodata
            for: 10m
        """,
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path, metrics={"water_level"}, types={"river_level"}, receivers={"ops"})
    found = [(p.line, p.field) for p in caught.value.problems]
    assert found == [
        (5, "rules[0].metric"),
        (6, "rules[0].scope.types[0]"),
        (7, "rules[0].receivers[0]"),
        (10, "rules[0].levels[1].at_least"),
        (11, "rules[1].name"),
    ]


def test_duplicate_keys_and_broken_yaml_are_reported(tmp_path: Path) -> None:
    dup = write_rules(tmp_path, "version: 1\nversion: 1\nrules: []\n", "dup.yaml")
    with pytest.raises(RulesError, match=r"dup.yaml:2: version: duplicate key"):
        load_rules(dup)
    broken = write_rules(tmp_path, "version: 1\nrules: [\n", "broken.yaml")
    with pytest.raises(RulesError, match=r"broken.yaml:\d+: \(document\): not valid YAML"):
        load_rules(broken)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400), (30, 30), ("1.5h", 5400)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_bad_duration_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="like 90s, 15m, 1h or 1d"):
        parse_duration("soon")


def test_rules_and_routes_read_durations_alike_and_routes_refuse_a_negative_one() -> None:
    """One parser (kotaflow.durations) for the rule file, the routes and the command line;
    a settings dump's ISO 8601 form reads back."""
    from kotaflow.alert_routes import Route

    found = Route.model_validate(
        {"receivers": ["x"], "group_window": "2m", "escalate_after": "PT15M"}
    )
    assert (found.group_window.total_seconds(), found.escalate_after) == (
        120,
        parse_duration("15m"),
    )
    assert parse_duration("250ms").total_seconds() == 0.25
    with pytest.raises(ValueError, match="negative"):
        Route.model_validate({"receivers": ["x"], "group_window": -5})
