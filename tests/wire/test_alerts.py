"""The alert event (``kotaflow/wire/alerts.py``) on ``kotaflow.alerts``."""

from __future__ import annotations

import json

import pytest

from kotaflow.wire.alerts import EVENT_VERSION, AlertEvent, Change, Severity

EVENT = AlertEvent(
    id="river_level/rtg-rl-01/3",
    rule="river_level",
    device="rtg-rl-01",
    type="river_level",
    kecamatan="Reok",
    metric="water_level",
    unit="cm",
    change=Change.ESCALATED,
    level="Siaga",
    previous_level="Waspada",
    severity=Severity.MAJOR,
    value=262.0,
    threshold=250.0,
    at_ms=1_764_300_000_000,
    started_ms=1_764_299_000_000,
    title={"id": "Sungai naik", "en": "River rising"},
    labels={"team": "bpbd"},
    receivers=("bpbd",),
    silenced_by=None,
    notify=True,
    nodata=False,
    last_seen_ms=1_764_300_000_000,
)


def test_the_schema_version_is_1() -> None:
    assert EVENT_VERSION == 1
    assert json.loads(EVENT.value_bytes())["v"] == 1


def test_an_event_round_trips() -> None:
    assert AlertEvent.from_bytes(EVENT.value_bytes()) == EVENT
    assert EVENT.key() == b"rtg-rl-01"


def test_the_value_carries_status_and_the_documented_fields() -> None:
    data = json.loads(EVENT.value_bytes())
    assert data["status"] == "firing"
    assert {
        "id", "rule", "device", "type", "kecamatan", "metric", "unit", "change", "status",
        "level", "previous_level", "severity", "value", "threshold", "at_ms", "started_ms",
        "labels", "silenced_by",
    } <= set(data)  # fmt: skip


def test_another_version_is_refused() -> None:
    data = {**EVENT.to_json(), "v": 2}
    with pytest.raises(ValueError, match="version 2 is not supported"):
        AlertEvent.from_json(data)
