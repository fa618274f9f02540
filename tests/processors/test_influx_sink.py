"""InfluxSink against the real InfluxDB: refused lines are isolated, the rest is written;
a refused token stalls the write until its file holds a valid one."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from influxdb_client.rest import ApiException

from kotaflow.settings import Settings
from processors.runtime.health import Health
from processors.runtime.influx import InfluxSink
from tests.processors.helpers import now_ms, wait_for
from tests.processors.influxadmin import influx_admin, with_token_file

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


async def test_a_refused_line_is_isolated_and_every_other_line_is_written(
    scratch_influx: Settings,
) -> None:
    stack = scratch_influx
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


async def test_an_unparsable_line_is_refused_alone(scratch_influx: Settings) -> None:
    """A 400 that quotes the line it cannot parse is about the data: that line only."""
    stack = scratch_influx
    measurement = f"test_sink_{uuid.uuid4().hex[:8]}"
    t = now_ms() - 60_000
    good = [f"{measurement},device=d x={float(i)} {t + i}" for i in range(10)]
    async with InfluxSink(stack) as influx:
        refused = await influx.write(stack.influxdb.telemetry_bucket, [*good, "garbage"])
    assert [(r.line, r.status) for r in refused] == [("garbage", 400)]


async def test_a_revoked_token_stalls_the_write_until_its_file_holds_a_valid_one(
    stack: Settings, tmp_path: Path
) -> None:
    health = Health("test")
    async with influx_admin(stack) as admin:
        bucket = f"test_{uuid.uuid4().hex[:8]}_sink"
        await admin.create_bucket(bucket)
        token_file = tmp_path / "token"
        old = await admin.create_token([bucket])
        token_file.write_text(old, encoding="utf-8")
        await admin.revoke(old)
        s = with_token_file(stack, (bucket, bucket), token_file)
        lines = [f"m,device=d x={float(i)} {now_ms() - 60_000 + i}" for i in range(100)]
        async with InfluxSink(s, gauge=health) as influx:
            with pytest.raises(ApiException) as refused:  # a tool is told at once
                await influx.query(f'from(bucket: "{bucket}") |> range(start: -1h)')
            assert refused.value.status == 401
            write = asyncio.create_task(influx.write(bucket, lines, "store"))
            await wait_for(lambda: health.blocked("store") == "unauthorized", 30, "the stall")
            await asyncio.sleep(2.0)
            assert not write.done()
            token_file.write_text(await admin.create_token([bucket]) + "\n", encoding="utf-8")
            assert await asyncio.wait_for(write, 60) == []
            assert health.blocked("store") is None
        async with InfluxSink(s) as reader:
            rows = await reader.query(f'from(bucket: "{bucket}") |> range(start: -1h)')
        assert len(rows) == 100
