"""Running ``kotaflow public``: load the fleet and rules, refresh on a schedule, serve."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from deploy.grafana.context import load_context
from kotaflow.settings import PublicSettings, Settings
from processors.public.ratelimit import RateLimit
from processors.public.refresh import InfluxReader, Keeper
from processors.public.server import build_app
from processors.public.snapshot import PublicContext


@dataclass(frozen=True, slots=True)
class PublicOptions:
    host: str = "127.0.0.1"
    port: int = 8090
    interval_s: float = 30.0
    lookback: timedelta = timedelta(days=2)
    rate_per_s: float = 5.0
    burst: float = 30.0
    trust_forwarded: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @classmethod
    def of(cls, settings: PublicSettings, **overrides: Any) -> PublicOptions:
        """The ``public:`` settings, with the options given on the command line."""
        configured = cls(
            host=settings.host,
            port=settings.port,
            interval_s=settings.refresh_s,
            rate_per_s=settings.rate_per_s,
            burst=settings.burst,
            trust_forwarded=settings.trust_forwarded,
            tls_cert_file=settings.tls_cert_file,
            tls_key_file=settings.tls_key_file,
        )
        return replace(configured, **{k: v for k, v in overrides.items() if v is not None})


def tls_context(options: PublicOptions) -> ssl.SSLContext | None:
    """The server side of HTTPS when a certificate and key are set, else None (plain HTTP,
    for loopback and tests). Both or neither: half a TLS setup must not fall back to HTTP."""
    cert, key = options.tls_cert_file, options.tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("public: set both tls_cert_file and tls_key_file, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)  # a missing or mismatched file raises here, at start
    return context


@contextlib.asynccontextmanager
async def running(settings: Settings, options: PublicOptions) -> AsyncIterator[tuple[str, Keeper]]:
    """The service listening (its base URL) with its keeper refreshing; stopped on exit."""
    tls = tls_context(options)
    public = PublicContext.of(load_context(settings))
    reader = InfluxReader(settings)
    keeper = Keeper(
        public,
        reader,
        settings.influxdb.telemetry_bucket,
        settings.influxdb.rollups_bucket,
        interval_s=options.interval_s,
        lookback=options.lookback,
    )
    await keeper.refresh()
    refresher = asyncio.create_task(keeper.run(), name="public-refresh")
    limit = RateLimit(options.rate_per_s, options.burst)
    runner = web.AppRunner(
        build_app(keeper, limit=limit, trust_forwarded=options.trust_forwarded),
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port, ssl_context=tls)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"{'https' if tls else 'http'}://{host}:{port}", keeper
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await runner.cleanup()
        await reader.close()


async def serve(settings: Settings, options: PublicOptions) -> None:
    async with running(settings, options) as (url, _):
        print(f"kotaflow public: {url}/  (API {url}/api/v1/)", flush=True)
        await asyncio.Event().wait()
