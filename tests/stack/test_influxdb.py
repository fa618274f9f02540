"""The local InfluxDB: the setup the pipeline and Grafana rely on, against the real server.

Points are written with influxdb-client's async API (as the store stage does) using the
pipeline's write-only token and read back with Flux using Grafana's read-only token. The
restart test runs last in this module: it stops and starts the shared ``influxd``.
"""

from __future__ import annotations

import logging
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from deploy.local.influxdb import (
    GRAFANA,
    OPERATOR,
    PIPELINE,
    RETENTION,
    VERSION,
    InfluxAccess,
    InfluxDB,
    bind_address,
    load_access,
    save_access,
    token_file,
    tokens_path,
)
from deploy.local.service import ServiceError
from kotaflow.settings import Settings

log = logging.getLogger("tests.stack.influxdb")


@pytest.fixture
def access(stack: Settings) -> InfluxAccess:
    saved = load_access(stack.stack.state_dir)
    assert saved is not None, "stack up must have saved the InfluxDB tokens"
    return saved


@pytest.fixture
def measurement() -> str:
    """A measurement of its own per test, so tests never see each other's points."""
    return f"test_{uuid.uuid4().hex[:12]}"


def _points(measurement: str, count: int) -> list[str]:
    """Line protocol, one reading a minute ending now, temperatures 20.0, 21.0, ..."""
    start = int(time.time()) - 60 * count
    return [
        f"{measurement},device=sensor-1 temperature={20.0 + i} {(start + 60 * i) * 10**9}"
        for i in range(count)
    ]


async def _write(access: InfluxAccess, bucket: str, points: list[str]) -> None:
    async with InfluxDBClientAsync(access.url, access.token(PIPELINE), org=access.org) as client:
        await client.write_api().write(bucket=bucket, record=points)


async def _read_temperatures(access: InfluxAccess, bucket: str, measurement: str) -> list[float]:
    flux = f"""
        from(bucket: "{bucket}")
          |> range(start: -1d)
          |> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "temperature")
          |> sort(columns: ["_time"])
    """
    async with InfluxDBClientAsync(access.url, access.token(GRAFANA), org=access.org) as client:
        tables = await client.query_api().query(flux)
    return [float(record.values["_value"]) for table in tables for record in table.records]


def test_only_loopback_urls_are_accepted() -> None:
    assert bind_address("http://localhost:8087") == ("127.0.0.1", 8087)
    with pytest.raises(ServiceError, match="not loopback"):
        bind_address("http://10.0.0.5:8086")


def test_saved_tokens_are_private_and_round_trip(tmp_path: Path) -> None:
    access = InfluxAccess(url="http://127.0.0.1:8086", org="kotaflow", tokens={PIPELINE: "t"})
    save_access(tmp_path, access)
    assert load_access(tmp_path) == access
    assert token_file(tmp_path, PIPELINE).read_text(encoding="utf-8").strip() == "t"
    for path in (tokens_path(tmp_path), token_file(tmp_path, PIPELINE)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.services
def test_status_reports_healthy_server_and_its_version(stack: Settings) -> None:
    status = InfluxDB(stack).status()
    assert status.healthy, status.detail
    assert status.version == VERSION
    assert status.pid is not None


@pytest.mark.services
def test_setup_saves_org_buckets_and_three_private_tokens(
    stack: Settings, access: InfluxAccess
) -> None:
    assert access.org == stack.influxdb.org
    assert set(access.buckets) == {stack.influxdb.telemetry_bucket, stack.influxdb.rollups_bucket}
    assert set(access.tokens) == {OPERATOR, PIPELINE, GRAFANA}
    state_dir = stack.stack.state_dir
    for path in [tokens_path(state_dir), *(token_file(state_dir, r) for r in access.tokens)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.services
def test_buckets_keep_data_for_their_configured_retention(access: InfluxAccess) -> None:
    headers = {"Authorization": f"Token {access.token(OPERATOR)}"}
    for name, bucket_id in access.buckets.items():
        body = httpx.get(f"{access.url}/api/v2/buckets/{bucket_id}", headers=headers).json()
        seconds = sum(rule["everySeconds"] for rule in body["retentionRules"])
        assert seconds == int(RETENTION[name].total_seconds()), name


@pytest.mark.services
@pytest.mark.asyncio
async def test_pipeline_writes_and_grafana_reads_back_with_flux(
    stack: Settings, access: InfluxAccess, measurement: str
) -> None:
    for bucket in (stack.influxdb.telemetry_bucket, stack.influxdb.rollups_bucket):
        await _write(access, bucket, _points(measurement, 5))
        assert await _read_temperatures(access, bucket, measurement) == [
            20.0,
            21.0,
            22.0,
            23.0,
            24.0,
        ]


async def _refused_write_status(access: InfluxAccess, token: str, bucket: str) -> int:
    """The HTTP status of a write that must be refused."""
    async with InfluxDBClientAsync(access.url, token, org=access.org) as client:
        with pytest.raises(ApiException) as refused:
            await client.write_api().write(bucket=bucket, record=_points("refused", 1))
    return int(refused.value.status)


@pytest.mark.services
@pytest.mark.asyncio
async def test_wrong_token_is_refused(stack: Settings, access: InfluxAccess) -> None:
    bucket = stack.influxdb.telemetry_bucket
    assert await _refused_write_status(access, "not-a-token", bucket) == 401


@pytest.mark.services
@pytest.mark.asyncio
async def test_grafana_token_cannot_write(stack: Settings, access: InfluxAccess) -> None:
    bucket = stack.influxdb.telemetry_bucket
    assert await _refused_write_status(access, access.token(GRAFANA), bucket) == 403


@pytest.mark.services
@pytest.mark.asyncio
async def test_pipeline_token_cannot_read(stack: Settings, access: InfluxAccess) -> None:
    """Write-only: to this token the buckets do not exist, so a query answers 404."""
    flux = f'from(bucket: "{stack.influxdb.telemetry_bucket}") |> range(start: -1h)'
    async with InfluxDBClientAsync(access.url, access.token(PIPELINE), org=access.org) as client:
        with pytest.raises(ApiException) as refused:
            await client.query_api().query(flux)
    assert refused.value.status == 404


@pytest.mark.services
def test_second_start_changes_nothing(stack: Settings, access: InfluxAccess) -> None:
    service = InfluxDB(stack)
    pid = service.status().pid
    service.start(log.info)
    assert service.status().pid == pid
    assert load_access(stack.stack.state_dir) == access


@pytest.mark.services
@pytest.mark.asyncio
async def test_data_survives_a_restart_of_influxd(
    stack: Settings, access: InfluxAccess, measurement: str
) -> None:
    bucket = stack.influxdb.telemetry_bucket
    await _write(access, bucket, _points(measurement, 3))
    service = InfluxDB(stack)
    before = service.status().pid
    service.stop(log.info)
    started = time.monotonic()
    service.start(log.info)
    log.info("influxd restarted in %.1fs", time.monotonic() - started)
    assert service.status().pid not in (None, before)
    assert await _read_temperatures(access, bucket, measurement) == [20.0, 21.0, 22.0]
