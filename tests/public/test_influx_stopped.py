"""With InfluxDB stopped, ``kotaflow public`` answers with the last data and its age.

Stopping the shared stack's InfluxDB would break every other test, so this runs a private
``influxd`` of its own (the local stack's binary, its own state dir and port), feeds it,
lets the service read it, then stops it for real.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from deploy.influxdb.reconcile import PIPELINE
from deploy.local import stack as local_stack
from deploy.local.influxdb import InfluxDB, load_access
from kotaflow.settings import Settings
from processors.public.service import PublicOptions, running
from tests.public.helpers import sample_points

pytestmark = pytest.mark.services
log = logging.getLogger("tests.public")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_influx(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A private influxd on a free port (stopped and its state removed afterwards)."""
    mine = stack.model_copy(
        update={
            "stack": stack.stack.model_copy(update={"state_dir": tmp_path / "stack"}),
            "influxdb": stack.influxdb.model_copy(
                update={"url": f"http://127.0.0.1:{_free_port()}", "token": None}
            ),
        }
    )
    try:
        statuses = local_stack.up(mine, log.info, only={"influxdb"})
        assert all(s.healthy for s in statuses), statuses
        yield mine
    finally:
        InfluxDB(mine).stop(log.info)


@pytest.mark.asyncio
async def test_page_keeps_the_last_data_and_says_its_age_when_influxdb_stops(
    private_influx: Settings,
) -> None:
    settings = private_influx
    access = load_access(settings.stack.state_dir)
    assert access is not None
    telemetry, _ = sample_points(datetime.now(UTC))
    async with httpx.AsyncClient(base_url=settings.influxdb.url, timeout=30) as http:
        written = await http.post(
            "/api/v2/write",
            params={"org": settings.influxdb.org, "bucket": "telemetry", "precision": "ms"},
            headers={"Authorization": f"Token {access.token(PIPELINE)}"},
            content="\n".join(telemetry),
        )
        written.raise_for_status()
    # the service reads with the private stack's own read-only token (tokens.json)
    assert settings.influxdb.token is None
    options = PublicOptions(port=0, interval_s=600.0)
    async with running(settings, options) as (url, keeper), httpx.AsyncClient(base_url=url) as web:
        before = await web.get("/kecamatan/reok")
        assert ">Siaga<" in before.text
        assert "Data dari" not in before.text
        InfluxDB(settings).stop(log.info)
        assert not await keeper.refresh()
        assert keeper.failing is not None
        after = await web.get("/kecamatan/reok")
        assert after.status_code == 200
        assert ">Siaga<" in after.text
        assert "Data dari" in after.text
        english = await web.get("/kecamatan/reok?lang=en")
        assert "Data from" in english.text
        current = (await web.get("/api/v1/current")).json()
        assert current["stale"] is True
        assert {d["device"]: d for d in current["devices"]}["reo-rl-02"]["status"]["id"] == "Siaga"
