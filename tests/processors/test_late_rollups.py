"""Late readings, up to the 7 days validate accepts: 1-minute, hourly and daily rollups all
equal a recomputation from the raw points, also when more late readings arrive for windows
that were corrected before (their other points are then in InfluxDB only)."""

from __future__ import annotations

import asyncio
import random

import pytest

from devices.fleet import load_fleet
from kotaflow.settings import Settings
from processors.aggregate.rollups import HOUR_MS
from processors.runner import StageName
from tests.processors.helpers import (
    Raw,
    committed,
    end_offsets,
    native,
    now_ms,
    produce,
    running,
    wait_for,
)
from tests.support.influx_check import Point, all_rollups_match, rollups
from tests.support.private_pipeline import device_tag

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

LATENESS_H = (1, 25, 72, 144)
"""1 hour, 25 hours, 3 days and 6 days late (the issue's acceptance)."""


def readings(s: Settings, ts_list: list[int], rng: random.Random) -> tuple[list[Raw], set[Point]]:
    """One message per time for each of two private devices, a few metrics each."""
    fleet = load_fleet(s)
    devices = [d for d in fleet.registry if d.enabled][:2]
    records: list[Raw] = []
    points: set[Point] = set()
    for ts in ts_list:
        for d in devices:
            specs = {n: m for n, m in fleet.metrics_of(d).items() if not m.boolean}
            metrics = list(specs)[:2]
            values = {
                m: round(rng.uniform(specs[m].minimum, specs[m].minimum + 40), 2) for m in metrics
            }
            records.append(native(d.id, values, ts, now_ms()))
            points.update((d.id, m, ts) for m in metrics)
    return records, points


async def test_late_readings_correct_minute_hour_and_day_rollups(on_stack_fleet: Settings) -> None:
    s = on_stack_fleet
    assert s.influxdb.token is None  # each stage with its own token from the token dir
    assert s.processing.influx_token_dir is not None
    rng = random.Random(17)
    now = now_ms()
    on_time = [now - 5 * 60_000 + i * 15_000 for i in range(16)]
    late = [now - h * HOUR_MS + i * 7_000 for h in LATENESS_H for i in range(12)]
    first, points = readings(s, on_time + late, rng)
    # Later uploads into the same, by then corrected, windows: other seconds, other values.
    again = [ts + 3_000 for ts in late] + [ts + 90_000 for ts in late[::4]]
    second, more = readings(s, again, rng)
    async with running(s, StageName.ALL) as health:
        await produce(s, s.kafka.topics.raw, first)
        await all_rollups_match(s, points)
        await produce(s, s.kafka.topics.raw, second + first[:5])  # and some exact duplicates
        await all_rollups_match(s, points | more)
    assert health.value("aggregate", "deadletter") == 0
    assert health.value("aggregate", "corrected_windows") >= len(LATENESS_H)
    queries = health.value("aggregate", "correction_queries")
    assert 0 < queries < health.value("aggregate", "corrected_windows")


async def test_late_corrections_wait_for_the_store_stage_and_commit_nothing_past_them(
    on_stack_fleet: Settings,
) -> None:
    """Without a store stage the late readings' raw points are not in InfluxDB: their
    corrections wait (and hold the aggregate's commit back) instead of writing a rollup of
    the late points alone; once the store runs, every rollup equals the recomputation."""
    s = on_stack_fleet
    tag = device_tag(s)
    rng = random.Random(5)
    now = now_ms()
    on_time = [now - 4 * 60_000 + i * 20_000 for i in range(10)]
    late = [now - 30 * HOUR_MS + i * 9_000 for i in range(10)]
    records, points = readings(s, on_time, rng)
    late_records, late_points = readings(s, late, rng)
    readings_topic, group = s.kafka.topics.readings, s.processing.aggregate.group_id
    async with running(s, StageName.VALIDATE, StageName.AGGREGATE) as health:
        await produce(s, s.kafka.topics.raw, records)
        await wait_for(lambda: rollups(s, tag, "1m"), 60, "on-time minute rollups")
        await produce(s, s.kafka.topics.raw, late_records)
        await wait_for(
            lambda: health.value("aggregate", "pending_corrections") > 0, 60, "waiting corrections"
        )
        await asyncio.sleep(3 * s.processing.aggregate.rollup_interval_s)  # commits would land
        ends = await end_offsets(s, readings_topic)
        done = await committed(s, group, readings_topic)
        assert sum(done.values()) < sum(ends.values())  # nothing committed past them
        written = {ts for (_, _, ts) in await rollups(s, tag, "1m")}
        assert not written & {ts - ts % 60_000 for ts in late}  # no rollup of late points alone
        async with running(s, StageName.STORE):
            await all_rollups_match(s, points | late_points)
            await wait_for(
                lambda: health.value("aggregate", "pending_corrections") == 0, 60, "no waiting"
            )
