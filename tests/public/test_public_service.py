"""``kotaflow public`` against the real InfluxDB: points in scratch buckets, the service on a
free loopback port with the read-only token, its answers compared with what InfluxDB holds.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from kotaflow.settings import Settings
from processors.public.queries import midnight_wita
from processors.public.refresh import InfluxReader
from processors.public.service import PublicOptions, running
from processors.runtime.influx import InfluxSink
from tests.conftest import ScratchLedger

pytestmark = pytest.mark.services
PRIVATE = ("rtg-wm-01", "rtg-sl-01")


@pytest.fixture
def public_influx(
    stack: Settings, scratch_ledger: ScratchLedger, tmp_path: Path
) -> Iterator[Settings]:
    """Scratch buckets, each role with its own token on them (the service: ``grafana``)."""
    tag = uuid.uuid4().hex[:8]
    mine = scratch_ledger.scratch(stack, tag, role_tokens=tmp_path / "tokens")
    try:
        yield mine
    finally:
        scratch_ledger.drop(stack, tag)


def _points(now: datetime) -> tuple[list[str], list[str]]:
    """(telemetry, rollups) lines: a gauge above Siaga, an air station, a rain gauge's
    rain today, and private devices (water meter, streetlight) and metric (battery)."""
    since = max(midnight_wita(now) + timedelta(seconds=1), now - timedelta(minutes=3))
    t1, t2 = int(since.timestamp() * 1000), int((now - timedelta(seconds=30)).timestamp() * 1000)
    hour = int(now.replace(minute=0, second=0, microsecond=0).timestamp() * 1000) - 3_600_000
    telemetry = [
        f"river_level,device=reo-rl-02,kecamatan=Reok,type=river_level water_level=120.5 {t1}",
        "river_level,device=reo-rl-02,kecamatan=Reok,type=river_level "
        f"water_level=262.25,battery=3.61 {t2}",
        f"air_quality,device=rtg-aq-01,kecamatan=Langke\\ Rembong,type=air_quality "
        f"pm25=12.5,pm10=20.25 {t2}",
        f"rain_gauge,device=rtg-rg-01,kecamatan=Langke\\ Rembong,type=rain_gauge rain=2.5 {t1}",
        f"rain_gauge,device=rtg-rg-01,kecamatan=Langke\\ Rembong,type=rain_gauge "
        f"rain=3.25,rain_rate=6.5 {t2}",
        f"water_meter,device=rtg-wm-01,kecamatan=Langke\\ Rembong,type=water_meter flow=5.5 {t2}",
        f"streetlight,device=rtg-sl-01,kecamatan=Langke\\ Rembong,type=streetlight power=90 {t2}",
        # alert events as the alert stage writes them: a public rule firing on the gauge,
        # a device-health rule (internal) on it, and one resolved.
        "alerts,device=reo-rl-02,kecamatan=Reok,rule=tinggi_muka_air,severity=major,"
        f'status=firing,type=river_level change="fired",level="Siaga",value=262.25 {t2}',
        "alerts,device=reo-rl-02,kecamatan=Reok,rule=baterai_lemah,severity=info,"
        f'status=firing,type=river_level change="fired",level="Lemah",value=3.2 {t2}',
        "alerts,device=itg-rl-01,kecamatan=Satar\\ Mese,rule=tinggi_muka_air,severity=warning,"
        f'status=firing,type=river_level change="fired",level="Waspada",value=160 {t1}',
        "alerts,device=itg-rl-01,kecamatan=Satar\\ Mese,rule=tinggi_muka_air,severity=warning,"
        f'status=resolved,type=river_level change="resolved",level="Waspada",value=130 {t2}',
    ]
    rollups = [
        "river_level,device=reo-rl-02,kecamatan=Reok,metric=water_level,type=river_level,"
        f"window=1h count=12i,last=260,max=262.25,mean=255.5,min=250,sum=3066 {hour}",
        "water_meter,device=rtg-wm-01,kecamatan=Langke\\ Rembong,metric=flow,type=water_meter,"
        f"window=1h count=4i,last=5,max=6,mean=5,min=4,sum=20 {hour}",
    ]
    return telemetry, rollups


async def _write(settings: Settings, bucket: str, lines: list[str]) -> None:
    token = (settings.processing.influx_token_dir or Path()) / "pipeline.token"
    async with httpx.AsyncClient(base_url=settings.influxdb.url, timeout=30) as http:
        answer = await http.post(
            "/api/v2/write",
            params={"org": settings.influxdb.org, "bucket": bucket, "precision": "ms"},
            headers={"Authorization": f"Token {token.read_text().strip()}"},
            content="\n".join(lines),
        )
        answer.raise_for_status()


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
    telemetry, rollups = _points(datetime.now(UTC))
    await _write(settings, settings.influxdb.telemetry_bucket, telemetry)
    await _write(settings, settings.influxdb.rollups_bucket, rollups)
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
