"""``kotaflow public`` against the real InfluxDB: points in scratch buckets, the service on a
free loopback port with the read-only token, its answers compared with what InfluxDB holds.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime

import httpx
import pytest

from kotaflow.settings import Settings
from processors.public.refresh import InfluxReader
from processors.public.service import PublicOptions, running
from processors.runtime.influx import InfluxSink
from tests.public.helpers import sample_points, write_lines

pytestmark = pytest.mark.services
PRIVATE = ("rtg-wm-01", "rtg-sl-01")


async def _held(settings: Settings) -> dict[tuple[str, str], float]:
    """What InfluxDB holds now: the last value per device and field (read independently)."""
    flux = (
        f'from(bucket: "{settings.influxdb.telemetry_bucket}") |> range(start: -1d)'
        ' |> filter(fn: (r) => r._measurement != "alerts")'
        ' |> last() |> keep(columns: ["device", "_field", "_value"])'
    )
    async with InfluxSink(settings) as influx:
        rows = await influx.query(flux)
    return {(str(r["device"]), str(r["_field"])): float(r["_value"]) for r in rows}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.asyncio
async def test_api_equals_influxdb_and_private_devices_never_appear(
    public_influx: Settings,
) -> None:
    settings = public_influx
    telemetry, rollups = sample_points(datetime.now(UTC))
    await write_lines(settings, settings.influxdb.telemetry_bucket, telemetry)
    await write_lines(settings, settings.influxdb.rollups_bucket, rollups)
    held = await _held(settings)
    options = PublicOptions(port=0, interval_s=2.0, rate_per_s=1.0, burst=60)
    async with running(settings, options) as (url, keeper), httpx.AsyncClient(base_url=url) as http:
        current = (await http.get("/api/v1/current")).json()
        devices = {d["device"]: d for d in current["devices"]}
        for (device, metric), value in held.items():
            if device in PRIVATE or metric == "battery":
                continue
            assert devices[device]["values"][metric]["value"] == value, (device, metric)
        assert devices["reo-rl-02"]["status"]["id"] == "Siaga"
        assert devices["rtg-rg-01"]["rain_today_mm"] == 5.75
        assert devices["rtg-aq-01"]["status"]["id"] == "Baik"
        assert devices["gwo-rl-01"]["silent"] is True  # no point written: silent
        warnings = [(w["rule"], w["device"], w["level"]) for w in current["warnings"]]
        assert warnings == [("tinggi_muka_air", "reo-rl-02", "Siaga")]  # not battery, not resolved

        bodies: dict[str, str] = {}
        for path in (
            "/",
            "/?lang=en",
            "/kecamatan/reok",
            "/kecamatan/langke-rembong?lang=en",
            "/api/v1/current",
            "/api/v1/current.csv",
            "/api/v1/dictionary",
            "/api/v1/fiware/WaterObserved",
            "/api/v1/rollups/reo-rl-02/water_level?window=1h",
        ):
            answer = await http.get(path)
            assert answer.status_code == 200, path
            bodies[path] = answer.text
        for body in bodies.values():
            for device in PRIVATE:
                assert device not in body
            assert "battery" not in body
        rollup = json.loads(bodies["/api/v1/rollups/reo-rl-02/water_level?window=1h"])
        assert rollup["rollups"][0]["mean"] == 255.5
        assert rollup["rollups"][0]["count"] == 12
        for private in ("/api/v1/rollups/rtg-wm-01/flow", "/api/v1/rollups/reo-rl-02/battery"):
            assert (await http.get(private)).status_code == 404
        assert ">Siaga<" in bodies["/kecamatan/reok"]
        assert "Peringatan aktif" in bodies["/kecamatan/reok"]
        assert "Tinggi muka air sungai</b>" in bodies["/kecamatan/reok"]
        assert "Lemah" not in bodies["/kecamatan/reok"]

        first = await http.get("/", headers={"Accept-Encoding": "gzip"})
        assert first.headers["Content-Encoding"] == "gzip"
        again = await http.get("/", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304

        reader = keeper.reader
        assert isinstance(reader, InfluxReader)
        queries_before, started = reader.queries, time.monotonic()
        for _ in range(20):  # visitors never cause a query: only the scheduled refreshes
            await http.get("/api/v1/current")
        refreshes = 1 + int((time.monotonic() - started) / options.interval_s)
        assert reader.queries - queries_before <= 3 * refreshes

        dead = settings.influxdb.model_copy(update={"url": f"http://127.0.0.1:{_closed_port()}"})
        keeper.reader = InfluxReader(settings.model_copy(update={"influxdb": dead}), 2.0)
        assert not await keeper.refresh()
        down = await http.get("/")
        assert down.status_code == 200
        assert "Data dari" in down.text
        assert ">Siaga<" in down.text
        assert (await http.get("/api/v1/current")).json()["stale"] is True

        statuses = [(await http.get("/api/v1/licence")).status_code for _ in range(80)]
        assert 429 in statuses
