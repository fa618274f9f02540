"""``kotaflow influxdb setup``: the org, buckets and tokens kotaflow needs, on any InfluxDB 2.x.

A thin command over :mod:`deploy.influxdb.reconcile`: reads the operator token (or does the
server's initial setup), reconciles, writes each role's token to ``--tokens-dir`` and prints
what it created, kept and found drifted.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from deploy.influxdb.reconcile import (
    PRODUCTION_ROLES,
    InfluxSetupError,
    SetupPlan,
    initial_setup,
    plan_of,
    reconcile,
    setup_allowed,
)
from kotaflow.context import settings_of
from kotaflow.secretfiles import write_private, write_private_if_changed

app = typer.Typer(
    help="InfluxDB: the org, buckets and tokens kotaflow needs.", no_args_is_help=True
)
errors = Console(stderr=True, highlight=False)


@app.command("setup")
def setup(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="InfluxDB's URL; default: influxdb.url.")] = None,
    org: Annotated[str | None, typer.Option(help="The org; default: influxdb.org.")] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File with the operator (all-access) token; default: influxdb.token. With "
            "--init-user on a new server: written (0600) with a new token if missing."
        ),
    ] = None,
    init_user: Annotated[
        str | None,
        typer.Option(help="On a server not set up yet: its first user (and the org, bucket)."),
    ] = None,
    init_password_file: Annotated[
        Path | None, typer.Option(help="File with that user's password (with --init-user).")
    ] = None,
    roles: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help="Issue this role's token (repeatable); default: "
            + ", ".join(PRODUCTION_ROLES)
            + " (pipeline: the shared token of old configs).",
        ),
    ] = None,
    tokens_dir: Annotated[
        Path | None,
        typer.Option(help="Write each role's token to DIR/<role>.token (0600; kept if same)."),
    ] = None,
) -> None:
    """Create the org, the buckets (retention: influxdb.*_retention_days) and one
    least-privilege token per role; change nothing that exists.

    Idempotent: a second run creates nothing. A bucket whose retention differs from the
    settings, or a token whose rights were changed, is reported as drifted and left alone.
    Exit 1 when the server cannot be set up (no token, refused call).

    Example: kotaflow influxdb setup --url http://127.0.0.1:8086 --token-file
    /etc/kotaflow/influx-operator.token --tokens-dir /etc/kotaflow/influx-tokens
    """
    settings = settings_of(ctx)
    base = (url or settings.influxdb.url).rstrip("/")
    try:
        plan = plan_of(settings, org, roles or PRODUCTION_ROLES)
        with httpx.Client(base_url=base, timeout=30.0) as http:
            token = _operator_token(http, plan, token_file, init_user, init_password_file)
            if token is None:
                token = (
                    settings.influxdb.token.get_secret_value() if settings.influxdb.token else ""
                )
            if not token:
                raise InfluxSetupError("no operator token: give --token-file or influxdb.token")
            http.headers["Authorization"] = f"Token {token}"
            result = reconcile(http, plan)
    except (InfluxSetupError, httpx.HTTPError, OSError) as err:
        errors.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    for line in result.lines():
        typer.echo(f"influxdb: {line}")
    if tokens_dir is not None:
        for role, value in result.tokens.items():
            path = tokens_dir / f"{role}.token"
            wrote = write_private_if_changed(path, value + "\n")
            typer.echo(f"influxdb: {'wrote' if wrote else 'kept'} {path}")


def _operator_token(
    http: httpx.Client,
    plan: SetupPlan,
    token_file: Path | None,
    init_user: str | None,
    init_password_file: Path | None,
) -> str | None:
    """The operator token from ``token_file``; on a new server with ``init_user``, the initial
    setup first (the new token is written to ``token_file`` before the server knows it)."""
    existing = (
        token_file.read_text(encoding="utf-8").strip()
        if token_file and token_file.is_file()
        else None
    )
    if init_user is None or not setup_allowed(http):
        if token_file is not None and existing is None:
            raise InfluxSetupError(f"{token_file}: no such file (the operator token)")
        return existing
    if token_file is None or init_password_file is None:
        raise InfluxSetupError("--init-user needs --init-password-file and --token-file")
    token = existing or secrets.token_urlsafe(48)
    if existing is None:
        write_private(token_file, token + "\n")
    password = init_password_file.read_text(encoding="utf-8").strip()
    initial_setup(http, plan, init_user, password, token)
    typer.echo(f"influxdb: created the initial setup (user {init_user}, token in {token_file})")
    return token
