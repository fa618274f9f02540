"""Points the public service's real-service tests write: what the pipeline would hold."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx

from kotaflow.settings import Settings
from processors.public.queries import midnight_wita


def sample_points(now: datetime) -> tuple[list[str], list[str]]:
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


async def write_lines(settings: Settings, bucket: str, lines: list[str]) -> None:
    token = (settings.processing.influx_token_dir or Path()) / "pipeline.token"
    async with httpx.AsyncClient(base_url=settings.influxdb.url, timeout=30) as http:
        answer = await http.post(
            "/api/v2/write",
            params={"org": settings.influxdb.org, "bucket": bucket, "precision": "ms"},
            headers={"Authorization": f"Token {token.read_text().strip()}"},
            content="\n".join(lines),
        )
        answer.raise_for_status()
