"""Shared test helpers for alerting: rule files written on the fly, readings, a clock."""

from __future__ import annotations

import textwrap
from pathlib import Path

from kotaflow.wire.readings import ValidReading
from processors.alerting.model import RuleSet
from processors.alerting.rules import load_rules

T0 = 1_764_300_000_000
"""2025-11-28 03:20 UTC = 11:20 WITA."""
MIN = 60_000


def write_rules(tmp_path: Path, body: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def rules_from(tmp_path: Path, body: str) -> RuleSet:
    return load_rules(write_rules(tmp_path, body))


def reading(
    device: str,
    metric: str,
    value: float,
    ts_ms: int,
    type_: str = "river_level",
    kecamatan: str = "Reok",
    unit: str = "cm",
) -> ValidReading:
    return ValidReading(device, type_, kecamatan, metric, value, unit, ts_ms)


RIVER_RULES = """
version: 1
defaults: {repeat: 1h}
rules:
  - name: river
    kind: threshold
    title: {id: Tinggi muka air sungai, en: River level}
    metric: water_level
    scope: {types: [river_level]}
    levels:
      - {name: Waspada, at_least: 150, clear_below: 140, severity: warning}
      - {name: Siaga, at_least: 250, clear_below: 240, for: 5m, severity: major}
      - {name: Awas, at_least: 350, clear_below: 340, severity: critical}
"""
