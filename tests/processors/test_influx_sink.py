"""InfluxSink against the real InfluxDB: refused lines are isolated, the rest is written."""

from __future__ import annotations

import uuid

import pytest

from kotaflow.settings import Settings
from processors.runtime.influx import InfluxSink
from tests.processors.helpers import now_ms

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


async def test_a_refused_line_is_isolated_and_every_other_line_is_written(
    stack: Settings,
) -> None:
    measurement = f"test_sink_{uuid.uuid4().hex[:8]}"
    bucket = stack.influxdb.telemetry_bucket
    t = now_ms() - 60_000
    good = [f"{measurement},device=d{i % 3} x={float(i)} {t + i}" for i in range(40)]
    conflict = f'{measurement},device=d0 x="not a float" {t + 1000}'  # field type conflict
    async with InfluxSink(stack) as influx:
        assert await influx.write(bucket, good[:1]) == []
        refused = await influx.write(bucket, [*good[1:20], conflict, *good[20:]])
        assert [r.line for r in refused] == [conflict]
        assert 400 <= refused[0].status < 500
        rows = await influx.query(
            f'from(bucket: "{bucket}") |> range(start: -1h)'
            f' |> filter(fn: (r) => r._measurement == "{measurement}")'
        )
    assert sorted(float(r["_value"]) for r in rows) == [float(i) for i in range(40)]
