"""Acceptance of issue 21, end to end over a weak link: devices behind an edge, a simulated
6 h outage, connection resets, a hang and a kill -9 of the edge during the drain, with
Toxiproxy between the edge and the central broker, through bridge, Kafka and processors
to InfluxDB (the scenario and its parts: tests/support/edge_scenario.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from processors.aggregate.rollups import HOUR_MS, day_of, hour_of
from tests.support.edge_scenario import (
    LIVE_DELAY_BOUND_S,
    OUTAGE_DEVICE_H,
    ScenarioReport,
    weak_link_scenario,
)
from tests.support.influx_check import all_rollups_match

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_a_weak_link_with_a_6_h_outage_resets_a_hang_and_kill_9_stores_every_reading_once(
    fleet_settings: Settings, toxiproxy_binary: Path, tmp_path: Path
) -> None:
    s = fleet_settings
    with weak_link_scenario(s, tmp_path, toxiproxy_binary) as report:
        print("\nedge end to end over a weak link:\n" + report.summary())
        check_acceptance(s, report)


def check_acceptance(s: Settings, report: ScenarioReport) -> None:

    # Every reading stored exactly once in effect, at its device time (or, without one,
    # at the edge receive time it travelled with), with the value sent.
    missing = sorted(report.expected.keys() - report.stored.keys())
    extra = sorted(report.stored.keys() - report.expected.keys())
    changed = [
        k
        for k in report.expected.keys() & report.stored.keys()
        if report.expected[k] != report.stored[k]
    ]
    wrong = f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
    wrong += f"{len(changed)} changed {changed[:5]}"
    assert not missing, wrong
    assert not extra, wrong
    assert not changed, wrong
    # 1-minute, hourly and daily rollups, each equal to a recomputation from raw.
    devices = {d.id for d in report.devices}
    asyncio.run(all_rollups_match(s, set(report.expected), devices=devices))

    # The outage spanned 6 device hours: hourly windows and a local midnight crossed.
    offset_ms = int(s.processing.aggregate.day_offset_h * HOUR_MS)
    timed = [r.device_ms for r in report.sent if r.device_ms is not None]
    assert report.device_span_ms[1] - report.device_span_ms[0] >= OUTAGE_DEVICE_H * HOUR_MS
    assert len({hour_of(t) for t in timed}) > OUTAGE_DEVICE_H
    assert len({day_of(t, offset_ms) for t in timed}) >= 2
    per_hour = sum(3600 / d.interval_s for d in report.devices)
    assert report.backlog_at_outage_end >= 0.9 * OUTAGE_DEVICE_H * per_hour

    # Per device, the backlog and live data each arrive in order.
    assert not report.order_breaks, report.order_breaks
    # Live data while the backlog drains (16 kbit/s, then a good link): delayed at most
    # the stated bound from publish at the edge to queryable in InfluxDB.
    assert set(report.phases) == {"16 kbit/s", "good link"}
    for phase in report.phases.values():
        assert phase.backlog_left > 0, phase
        assert len(phase.live_delays_s) >= 5, phase
        assert max(phase.live_delays_s) <= LIVE_DELAY_BOUND_S, phase
    # The hang was one (nothing went through, nothing was reset) and the edge's keepalive
    # noticed it.
    assert report.bytes_through_hang == 0
    assert "lost (Keep alive timeout)" in report.edge_log
    # The bridge's rate limit takes the edge's replay as the backlog it is.
    assert "rate_limited" not in report.bridge_log
