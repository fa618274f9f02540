"""Native JSON specifics: buffered arrays, time forms, and the shapes it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devices.decoding import DecodeContext, DecodeResult
from devices.fleet import Fleet
from devices.formats import decode
from devices.topics import match_topic
from kotaflow.wire.reasons import Reason

RX_MS = 1_795_000_000_000
TOPIC = "kotaflow/t-wx-01/telemetry"


def run(fleet: Fleet, body: Any) -> DecodeResult:
    match = match_topic(TOPIC)
    assert match is not None
    return decode(json.dumps(body).encode(), match, RX_MS, DecodeContext(fleet))


def test_buffered_upload_keeps_each_entrys_time(fleet: Fleet) -> None:
    body = [
        {"ts": RX_MS - 7_200_000, "values": {"rain": 3.5}},
        {"ts": "2026-11-18T19:06:40+08:00", "values": {"rain": 1.0}},
        {"temperature": 17.0},
    ]
    result = run(fleet, body)
    assert result.rejections == []
    assert [(r.metric, r.ts_ms) for r in result.readings] == [
        ("rain", RX_MS - 7_200_000),
        ("rain", RX_MS),  # 2026-11-18T11:06:40Z (WITA +08:00) == RX_MS
        ("temperature", RX_MS),
    ]


@pytest.mark.parametrize(
    ("entry", "reason", "words"),
    [
        ({"ts": "2026-11-18 11:06:40", "values": {"rain": 1}}, Reason.BAD_TIME, "UTC offset"),
        ({"ts": "yesterday", "values": {"rain": 1}}, Reason.BAD_TIME, "RFC 3339"),
        ({"ts": True, "values": {"rain": 1}}, Reason.BAD_TIME, "epoch milliseconds"),
        ({"ts": RX_MS, "values": {"rain": 1}, "device": "x"}, Reason.BAD_SHAPE, "exactly"),
        ({"ts": RX_MS}, Reason.BAD_SHAPE, "exactly ts and values"),
        ({"ts": RX_MS, "values": [1, 2]}, Reason.BAD_SHAPE, "{metric: value}"),
        ({"ts": RX_MS // 1000, "values": {"rain": 1}}, Reason.TIME_TOO_OLD, "seconds"),
        ({"temperature": {"value": 20}}, Reason.BAD_SHAPE, '"v"'),
        ({"temperature": {"v": 20, "u": "degC", "q": 1}}, Reason.BAD_SHAPE, '"v"'),
    ],
    ids=[
        "naive",
        "words",
        "bool",
        "stray-key",
        "no-values",
        "values-list",
        "seconds",
        "value-object-keys",
        "value-object-extra",
    ],
)
def test_malformed_entries_say_why(
    fleet: Fleet, entry: dict[str, Any], reason: Reason, words: str
) -> None:
    result = run(fleet, [entry, {"rain": 0.5}])
    assert [r.metric for r in result.readings] == ["rain"]
    assert [r.reason for r in result.rejections] == [reason]
    assert words in result.rejections[0].message


def test_array_of_non_objects_is_refused_entry_by_entry(fleet: Fleet) -> None:
    result = run(fleet, [{"rain": 0.5}, 3, "x"])
    assert [r.reason for r in result.rejections] == [Reason.BAD_SHAPE, Reason.BAD_SHAPE]
    assert len(result.readings) == 1
