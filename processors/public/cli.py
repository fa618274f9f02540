"""``kotaflow public``: the residents' status pages and open-data API (read-only)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from kotaflow.context import settings_of


def public(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(envvar="KOTAFLOW_PUBLIC_HOST", help="Listen address.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="KOTAFLOW_PUBLIC_PORT", help="Listen port (0: any free one).")
    ] = 8090,
    interval: Annotated[
        float,
        typer.Option(envvar="KOTAFLOW_PUBLIC_INTERVAL", help="Seconds between InfluxDB refreshes."),
    ] = 30.0,
    rate: Annotated[float, typer.Option(help="Requests per second allowed per client.")] = 5.0,
    burst: Annotated[
        float, typer.Option(help="Requests a client may burst before the rate applies.")
    ] = 30.0,
    trust_forwarded: Annotated[
        bool,
        typer.Option(help="Rate-limit by X-Forwarded-For (only behind our own TLS proxy)."),
    ] = False,
) -> None:
    """Serve the public status pages and open-data API, reading InfluxDB read-only.

    Example: kotaflow public --port 8090   (then open http://127.0.0.1:8090/?lang=en)
    """
    from processors.public.service import PublicOptions, serve

    options = PublicOptions(
        host=host,
        port=port,
        interval_s=interval,
        rate_per_s=rate,
        burst=burst,
        trust_forwarded=trust_forwarded,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings_of(ctx), options))
