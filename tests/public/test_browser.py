"""The regency and a kecamatan page in headless Chromium (Debian's ``chromium``) at 360 px.

The service reads scratch buckets holding a gauge pushed above its Siaga level. Chromium's
``--dump-dom`` shows what the browser rendered (checked for the statuses, both languages);
``--screenshot`` leaves PNGs in ``$KOTAFLOW_SCREENSHOTS`` (default: the test's tmp dir) to
look at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from processors.public.service import PublicOptions, running
from tests.public.helpers import sample_points, write_lines

pytestmark = pytest.mark.services
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def _chromium(*args: str) -> bytes:
    assert CHROMIUM, "apt-get install -y chromium"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=360,800",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0
    return out


@pytest.mark.asyncio
async def test_pages_render_in_chromium_with_the_expected_status(
    public_influx: Settings, tmp_path: Path
) -> None:
    settings = public_influx
    telemetry, _ = sample_points(datetime.now(UTC))
    await write_lines(settings, settings.influxdb.telemetry_bucket, telemetry)
    shots = Path(os.environ.get("KOTAFLOW_SCREENSHOTS", tmp_path))
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    async with running(settings, PublicOptions(port=0, interval_s=5.0)) as (url, _):
        pages = {
            "regency-id": (f"{url}/", ["Kabupaten Manggarai", "Siaga", "Baik", "Hujan ringan"]),
            "regency-en": (f"{url}/?lang=en", ["Manggarai Regency", "Siaga (standby)"]),
            "reok-id": (
                f"{url}/kecamatan/reok",
                ["Kecamatan Reok", "Peringatan aktif", "Siaga", "Tidak ada data"],
            ),
        }
        for name, (page, expected) in pages.items():
            dom = (await _chromium("--dump-dom", page)).decode()
            for text in expected:
                assert text in dom, (name, text)
            await _chromium(f"--screenshot={shots / f'{name}.png'}", page)
            assert (shots / f"{name}.png").stat().st_size > 1000
