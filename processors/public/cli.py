"""``kotaflow public``: the residents' status pages and open-data API (read-only).

Defaults come from the ``public:`` settings (``KOTAFLOW_PUBLIC__PORT`` etc.); an option
given here wins.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from kotaflow.context import settings_of


def public(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: public.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Listen port, 0 for any free one (default: public.port, 8090)."),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between InfluxDB reads (default: public.refresh_s, 30)."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Requests/s allowed per client (default: public.rate_per_s, 5)."),
    ] = None,
    burst: Annotated[
        float | None,
        typer.Option(help="Burst per client before the rate (default: public.burst, 30)."),
    ] = None,
    trust_forwarded: Annotated[
        bool | None,
        typer.Option(
            "--trust-forwarded/--no-trust-forwarded",
            help="Rate-limit by X-Forwarded-For: only behind our own TLS proxy "
            "[public.trust_forwarded: no].",
            show_default=False,
        ),
    ] = None,
    tls_cert_file: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this PEM certificate chain (public.tls_cert_file)."),
    ] = None,
    tls_key_file: Annotated[
        Path | None,
        typer.Option(help="The certificate's PEM private key (public.tls_key_file)."),
    ] = None,
) -> None:
    """Serve the public status pages and open-data API, reading InfluxDB read-only.

    Example: kotaflow public --port 8090   (then open http://127.0.0.1:8090/?lang=en)
    """
    from processors.public.service import PublicOptions, serve, tls_context

    settings = settings_of(ctx)
    options = PublicOptions.of(
        settings.public,
        host=host,
        port=port,
        interval_s=interval,
        rate_per_s=rate,
        burst=burst,
        trust_forwarded=trust_forwarded,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
    )
    try:
        tls_context(options)  # a bad TLS setup is told before InfluxDB is read
    except (ValueError, OSError) as err:  # ssl.SSLError is an OSError
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, options))
