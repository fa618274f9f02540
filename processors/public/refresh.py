"""The snapshot kept fresh on a schedule, and the rollup cache: all InfluxDB reads.

One refresh = three Flux queries (latest values, today's rain, firing public alerts), every
``interval_s`` whatever the traffic. A failed refresh keeps the last snapshot (pages then
say "data dari HH:MM").
Rollups are read on demand but cached per (device, metric, window) for ``interval_s``;
only public devices and metrics have a key, so the query rate stays bounded too.
Reads use a read-only token: ``public``, else ``grafana`` (:class:`TokenSource`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from kotaflow.settings import Settings
from processors.public import queries
from processors.public.publicity import PublicDevice
from processors.public.snapshot import PublicContext, Snapshot, build_snapshot
from processors.runtime.influx_token import PUBLIC_ROLE, READ_ROLE, TokenSource

log = logging.getLogger("kotaflow.public")


class FluxReader(Protocol):
    async def rows(self, flux: str) -> list[dict[str, Any]]: ...


class InfluxReader:
    """A read-only InfluxDB client (the ``public`` token, else ``grafana``'s); counts the
    queries it sends."""

    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.source = TokenSource(settings, PUBLIC_ROLE, fallback=READ_ROLE)
        self.client = InfluxDBClientAsync(
            url=settings.influxdb.url,
            token=self.source.read(),
            org=settings.influxdb.org,
            timeout=int(timeout_s * 1000),
        )
        self.queries = 0

    async def rows(self, flux: str) -> list[dict[str, Any]]:
        self.queries += 1
        tables = await self.client.query_api().query(flux, org=self.settings.influxdb.org)
        return [record.values for table in tables for record in table.records]

    async def close(self) -> None:
        await self.client.close()  # type: ignore[no-untyped-call]


@dataclass
class Keeper:
    """The current snapshot, when it was last tried, and the rollups cached for it."""

    public: PublicContext
    reader: FluxReader
    telemetry_bucket: str
    rollups_bucket: str
    interval_s: float = 30.0
    lookback: timedelta = timedelta(days=2)
    snapshot: Snapshot | None = None
    failing: str | None = None
    """Why the last refresh failed (None: it succeeded)."""
    version: int = 0
    _rollups: dict[tuple[str, str, str], tuple[float, list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    _locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)

    async def refresh(self, now: datetime | None = None) -> bool:
        """Read InfluxDB once; whether a new snapshot is in place."""
        now = now or datetime.now(UTC)
        devices = self.public.devices
        try:
            latest = await self.reader.rows(
                queries.latest_flux(self.telemetry_bucket, devices, self.lookback)
            )
            rain_flux = queries.rain_today_flux(self.telemetry_bucket, devices, now)
            rain = await self.reader.rows(rain_flux) if rain_flux else []
            public = self.public
            alerts_flux = queries.alerts_flux(
                public.alerts_bucket, public.alerts_measurement, devices, public.warning_rules
            )
            alerts = await self.reader.rows(alerts_flux) if alerts_flux else []
        except Exception as err:  # any failure: keep serving the last snapshot
            self.failing = f"{type(err).__name__}: {err}"[:300]
            log.warning(
                "public snapshot not refreshed: serving the last one", extra={"why": self.failing}
            )
            return False
        self.snapshot = build_snapshot(
            self.public,
            queries.latest_rows(latest),
            queries.rain_rows(rain),
            now,
            queries.alert_rows(alerts),
        )
        self.failing = None
        self.version += 1
        return True

    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled (the first after one interval: the
        caller reads once before serving)."""
        due = time.monotonic()
        while True:
            due += self.interval_s
            await asyncio.sleep(max(1.0, due - time.monotonic()))
            await self.refresh()

    async def rollups(self, device_id: str, metric: str, window: str) -> list[dict[str, Any]]:
        """Rollup rows of a public device's metric, at most ``interval_s`` old; the cached
        ones (possibly older) if InfluxDB does not answer, else the error."""
        spec = next(p for p in self.public.devices if p.device.id == device_id)
        key = (device_id, metric, window)
        async with self._locks.setdefault(key, asyncio.Lock()):  # one query per key at a time
            return await self._rollups_of(spec, key)

    async def _rollups_of(
        self, spec: PublicDevice, key: tuple[str, str, str]
    ) -> list[dict[str, Any]]:
        _, metric, window = key
        cached = self._rollups.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.interval_s:
            return cached[1]
        try:
            rows = await self.reader.rows(
                queries.rollups_flux(self.rollups_bucket, spec, metric, window)
            )
        except Exception:
            if cached is not None:
                return cached[1]
            raise
        self._rollups[key] = (time.monotonic(), rows)
        return rows
