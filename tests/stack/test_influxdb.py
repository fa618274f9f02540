"""The local InfluxDB: the setup the pipeline and Grafana rely on, against the real server.

Points are written with influxdb-client's async API (as the store stage does) using the
pipeline's write-only token and read back with Flux using Grafana's read-only token; each
test's probe points (a measurement of its own) are deleted at teardown, so the operator's
buckets keep only what the operator put there. The per-stage tokens are tested by what the
server refuses them. The restart test runs last in this module: it stops and starts the
shared ``influxd``.
"""

from __future__ import annotations

import logging
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from deploy.influxdb.reconcile import (
    AGGREGATE,
    ALERT,
    GRAFANA,
    HEALTH,
    PIPELINE,
    PUBLIC,
    STORE,
    plan_of,
    stage_rights,
)
from deploy.local.influxdb import (
    OPERATOR,
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
def measurement(stack: Settings) -> Iterator[str]:
    """A measurement of its own per test, so tests never see each other's points; its
    points are deleted from both buckets afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    access = load_access(stack.stack.state_dir)
    assert access is not None
    for bucket in (stack.influxdb.telemetry_bucket, stack.influxdb.rollups_bucket):
        status = _delete(access, access.token(OPERATOR), bucket, name)
        assert status == 204, f"probe points of {name} not deleted from {bucket}: {status}"


def _delete(access: InfluxAccess, token: str, bucket: str, measurement: str) -> int:
    """``/api/v2/delete`` of ``measurement``'s points in ``bucket``; the HTTP status."""
    response = httpx.post(
        f"{access.url}/api/v2/delete",
        params={"org": access.org, "bucket": bucket},
        headers={"Authorization": f"Token {token}"},
        json={
            "start": "1970-01-01T00:00:00Z",
            "stop": "2100-01-01T00:00:00Z",
            "predicate": f'_measurement="{measurement}"',
        },
        timeout=30.0,
    )
    return response.status_code


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
def test_setup_saves_org_buckets_and_a_private_token_per_role(
    stack: Settings, access: InfluxAccess
) -> None:
    assert access.org == stack.influxdb.org
    assert set(access.buckets) == {stack.influxdb.telemetry_bucket, stack.influxdb.rollups_bucket}
    assert set(access.tokens) == {
        OPERATOR,
        PIPELINE,
        GRAFANA,
        STORE,
        AGGREGATE,
        ALERT,
        HEALTH,
        PUBLIC,
    }
    state_dir = stack.stack.state_dir
    for path in [tokens_path(state_dir), *(token_file(state_dir, r) for r in access.tokens)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.services
def test_buckets_keep_data_for_their_configured_retention(
    stack: Settings, access: InfluxAccess
) -> None:
    retention = plan_of(stack).retention_s  # influxdb.*_retention_days
    headers = {"Authorization": f"Token {access.token(OPERATOR)}"}
    for name, bucket_id in access.buckets.items():
        body = httpx.get(f"{access.url}/api/v2/buckets/{bucket_id}", headers=headers).json()
        seconds = sum(rule["everySeconds"] for rule in body["retentionRules"])
        assert seconds == retention[name], name


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


def _granted(access: InfluxAccess, token: str) -> set[tuple[str, str]]:
    """(action, bucket name) of every permission the server holds for ``token``."""
    headers = {"Authorization": f"Token {access.token(OPERATOR)}"}
    found = httpx.get(
        f"{access.url}/api/v2/authorizations", params={"orgID": access.org_id}, headers=headers
    ).json()["authorizations"]
    (auth,) = [a for a in found if a["token"] == token]
    names = {bucket_id: name for name, bucket_id in access.buckets.items()}
    return {(p["action"], names[p["resource"]["id"]]) for p in auth["permissions"]}


@pytest.mark.services
@pytest.mark.parametrize("role", [STORE, AGGREGATE, ALERT, HEALTH, PIPELINE, GRAFANA, PUBLIC])
def test_each_role_holds_exactly_its_rights(
    stack: Settings, access: InfluxAccess, role: str
) -> None:
    assert _granted(access, access.token(role)) == set(stage_rights(stack)[role])


@pytest.mark.services
@pytest.mark.asyncio
async def test_store_token_cannot_write_rollups_and_aggregate_token_cannot_write_telemetry(
    stack: Settings, access: InfluxAccess
) -> None:
    telemetry, rollups = stack.influxdb.telemetry_bucket, stack.influxdb.rollups_bucket
    assert await _refused_write_status(access, access.token(STORE), rollups) == 403
    assert await _refused_write_status(access, access.token(AGGREGATE), telemetry) == 403
    assert await _refused_write_status(access, access.token(ALERT), rollups) == 403
    assert await _refused_write_status(access, access.token(HEALTH), telemetry) == 403
    assert await _refused_write_status(access, access.token(PUBLIC), telemetry) == 403


@pytest.mark.services
@pytest.mark.asyncio
async def test_aggregate_token_reads_the_raw_points_it_recomputes_from(
    stack: Settings, access: InfluxAccess
) -> None:
    flux = f'from(bucket: "{stack.influxdb.telemetry_bucket}") |> range(start: -1m) |> limit(n: 1)'
    async with InfluxDBClientAsync(access.url, access.token(AGGREGATE), org=access.org) as client:
        await client.query_api().query(flux)  # no 404: the bucket is visible to it


@pytest.mark.services
def test_a_write_token_may_delete_in_its_bucket_and_nowhere_else(
    stack: Settings, access: InfluxAccess, measurement: str
) -> None:
    """InfluxDB 2.x has no delete right: write on a bucket includes /api/v2/delete there
    (docs/security.md). The predicate matches only this test's own (empty) measurement."""
    telemetry, rollups = stack.influxdb.telemetry_bucket, stack.influxdb.rollups_bucket
    assert _delete(access, access.token(STORE), telemetry, measurement) == 204
    assert _delete(access, access.token(STORE), rollups, measurement) in (403, 404)
    assert _delete(access, access.token(GRAFANA), telemetry, measurement) in (403, 404)
