"""The edge's readings about itself (edge/report.py): what they say, and that the pipeline's
own decoder takes every value as a valid reading of the registry's gateway device."""

from __future__ import annotations

import json

from devices.decoding import DecodeContext
from devices.fleet import load_fleet
from devices.formats import decode
from devices.topics import match_topic
from edge.queue import Level, QueueStats
from edge.report import Counters, GatewayReporter

NOW_MS = 1_796_000_000_000
GIB = 1 << 30


def stats(messages: int = 0, size: int = 0, oldest_ms: int | None = None) -> QueueStats:
    return QueueStats(messages, size, oldest_ms, 2, GIB, Level.OK)


def test_a_report_covers_its_period_queue_link_and_rates() -> None:
    reporter = GatewayReporter("reo-gw-01", 60.0, 100.0, Counters(10, 5, 1))
    for second in range(0, 61):  # link up for the first 45 s, then down
        reporter.observe(100.0 + second, link_up=second <= 45)
    assert reporter.due(160.0)
    queued = stats(300, 60_000, NOW_MS - 1_800_000)
    values = reporter.values(160.0, NOW_MS, queued, Counters(130, 65, 2))
    assert values == {
        "queue_messages": 300,
        "queue_bytes": 60_000,
        "oldest_age": 1800.0,
        "budget_used": round(100 * 60_000 / GIB, 3),
        "link_uptime": 75.0,
        "link_drops": 1,
        "forward_rate": 1.0,
        "receive_rate": 2.0,
        "refused": 2,
    }


def test_each_report_starts_the_next_period() -> None:
    reporter = GatewayReporter("reo-gw-01", 60.0, 0.0, Counters(0, 0, 0))
    reporter.observe(0.0, True)
    reporter.observe(60.0, True)
    first = reporter.report(60.0, NOW_MS, stats(), Counters(60, 60, 0))
    assert first.topic == "kotaflow/reo-gw-01/telemetry"
    assert (first.qos, first.retain, first.rx_ms) == (1, False, NOW_MS)
    assert not reporter.due(100.0)
    reporter.observe(120.0, False)
    body = json.loads(reporter.report(120.0, NOW_MS + 60_000, stats(), Counters(60, 60, 1)).payload)
    assert body["ts"] == NOW_MS + 60_000
    assert body["values"]["forward_rate"] == 0.0
    assert body["values"]["link_uptime"] == 0.0
    assert body["values"]["link_drops"] == 1


def test_the_validate_stage_takes_every_value_as_a_reading_of_the_gateway() -> None:
    fleet = load_fleet()
    gateway = fleet.registry.by_id["reo-gw-01"]
    assert gateway.type == "gateway"
    reporter = GatewayReporter(gateway.id, 60.0, 0.0, Counters(0, 0, 0))
    reporter.observe(0.0, True)
    reporter.observe(60.0, True)
    reading = reporter.report(
        60.0, NOW_MS, stats(12_000, 2_400_000, NOW_MS - 3_600_000), Counters(600, 540, 3)
    )
    match = match_topic(reading.topic)
    assert match is not None
    result = decode(reading.payload, match, NOW_MS + 5_000, DecodeContext(fleet))
    assert result.rejections == []
    assert {r.metric for r in result.readings} == set(fleet.catalogue.types["gateway"].metrics)
    assert {(r.device_id, r.ts_ms) for r in result.readings} == {(gateway.id, NOW_MS)}
