"""``kotaflow grafana render|sync|check``: Grafana's dashboards, data source and alerting."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.grafana.alerting import group_rules
from deploy.grafana.bundle import Bundle, build_bundle
from deploy.grafana.datasource import MIN_INTERVAL_S, TOKEN_ENV
from deploy.grafana.envref import EnvRef, FileRef, MissingSecretError
from deploy.grafana.i18n import Lang
from deploy.grafana.interpolate import QueryWindow, grafana_interval
from deploy.grafana.provisioning import GRAFANA_PROVISIONING, render
from deploy.grafana.querycheck import PanelCheck, check_dashboard, check_rule
from kotaflow.context import settings_of
from kotaflow.settings import Settings
from processors.runtime.influx import READ_ROLE, InfluxConfigError, InfluxSink, resolve_token

app = typer.Typer(
    help="Grafana as code: render provisioning files, sync through the API, check queries.\n\n"
    "Example: kotaflow grafana render deploy/grafana/provisioning",
    no_args_is_help=True,
)
console = Console(stderr=True, highlight=False)
PANEL_POINTS = 1000
"""Data points Grafana asks for per panel (about a panel's width in pixels)."""

LangOption = Annotated[
    str,
    typer.Option("--lang", help="Dashboard language: id (Bahasa Indonesia), en, or all."),
]


def _langs(value: str) -> list[Lang]:
    if value == "all":
        return list(Lang)
    try:
        return [Lang(value)]
    except ValueError:
        raise typer.BadParameter("use id, en or all", param_hint="--lang") from None


@app.command("render")
def render_command(
    ctx: typer.Context,
    out_dir: Annotated[
        Path, typer.Argument(help="Directory to write (Grafana's provisioning dir).")
    ],
    lang: LangOption = "all",
    grafana_dir: Annotated[
        str,
        typer.Option(help="Where Grafana will see OUT_DIR (dashboard providers point there)."),
    ] = str(GRAFANA_PROVISIONING),
    influx_url: Annotated[
        str | None, typer.Option(help="InfluxDB URL as Grafana reaches it (default: settings).")
    ] = None,
    influx_token_file: Annotated[
        str | None,
        typer.Option(
            help="Grafana reads the InfluxDB token from this file on its machine "
            f"(default: from its environment variable {TOKEN_ENV})."
        ),
    ] = None,
) -> None:
    """Write datasources/, dashboards/ and alerting/ provisioning files.

    Example: kotaflow grafana render /etc/grafana/provisioning --influx-url http://influxdb:8086
    """
    token = FileRef(influx_token_file) if influx_token_file else None
    bundle = build_bundle(settings_of(ctx), _langs(lang), token=token, influx_url=influx_url)
    done = render(bundle, out_dir, PurePosixPath(grafana_dir))
    for path in done.files:
        console.print(f"wrote {path}")
    for path in done.removed:
        console.print(f"removed stale {path}")
    for note in done.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    needed = ", ".join(sorted(done.env))
    console.print(
        f"{len(bundle.dashboards)} dashboards; Grafana needs in its environment: {needed}"
    )


@app.command()
def sync(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="Grafana's base URL.", envvar="KOTAFLOW_GRAFANA_URL")],
    token: Annotated[
        str,
        typer.Option(
            help="Grafana service-account token (Editor or Admin).",
            envvar="KOTAFLOW_GRAFANA_API_TOKEN",
        ),
    ],
    lang: LangOption = "all",
    influx_url: Annotated[
        str | None, typer.Option(help="InfluxDB URL as Grafana reaches it (default: settings).")
    ] = None,
    influx_token: Annotated[
        str | None,
        typer.Option(
            help="Read-only InfluxDB token for the data source (default: the local stack's).",
            envvar=TOKEN_ENV,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only show what would change.")] = False,
    force: Annotated[
        bool, typer.Option(help="Update even unchanged objects (rotated secrets).")
    ] = False,
) -> None:
    """Create or update folders, data source, dashboards and alerting in a running Grafana;
    delete the contact points and rule groups kotaflow made that the settings no longer have.

    Example: kotaflow grafana sync --url https://grafana.example.id --token glsa_... --dry-run
    """
    from grafana_client.api import GrafanaApi

    from deploy.grafana import sync as syncing

    settings = settings_of(ctx)
    secret = EnvRef(TOKEN_ENV, influx_token or _stack_read_token(settings))
    bundle = build_bundle(settings, _langs(lang), token=secret, influx_url=influx_url)
    api = GrafanaApi.from_url(url, credential=token, timeout=30.0)
    desired = syncing.desired_objects(bundle)
    changes = syncing.plan(desired, syncing.fetch_current(api, desired), force=force)
    owned = syncing.fetch_owned(api, bundle.alerting.folder_uid)
    changes += syncing.leftovers(desired, owned)
    table = Table("kind", "uid", "title", "action")
    for change in changes:
        item = change.desired
        table.add_row(item.kind.value, item.key, item.title, change.action.value)
    Console().print(table)
    counts = syncing.summary(changes)
    console.print(", ".join(f"{n} {action.value}" for action, n in counts.items()))
    if dry_run:
        console.print("dry run: nothing sent")
        return
    try:
        refused = syncing.apply(api, changes)
    except MissingSecretError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    for problem in refused:
        console.print(f"[yellow]warning:[/yellow] {problem}")


@app.command()
def check(
    ctx: typer.Context,
    lang: LangOption = "id",
    hours: Annotated[float, typer.Option(help="Dashboard time range: the last N hours.")] = 6.0,
    device: Annotated[str | None, typer.Option(help="Device for the drill-down variables.")] = None,
    strict: Annotated[
        bool, typer.Option(help="Also fail lists that may be empty (silent devices, alerts).")
    ] = False,
) -> None:
    """Run every panel and alert-rule query against InfluxDB, as Grafana would; exit 1 on problems.

    Example: kotaflow grafana check --hours 24 --device rtg-aq-01
    """
    settings = settings_of(ctx)
    bundle = build_bundle(settings, _langs(lang))
    choose = {"device": device} if device else {}
    checks = asyncio.run(
        run_checks(settings, bundle, timedelta(hours=hours), choose, strict=strict)
    )
    table = Table("dashboard / rule", "panel", "rows", "problems")
    for item in checks:
        panel = item.panel + (f" [{item.repeat}]" if item.repeat else "")
        table.add_row(item.dashboard, panel, str(item.rows), "; ".join(item.problems) or "ok")
    Console().print(table)
    failed = [c for c in checks if not c.ok]
    console.print(f"{len(checks)} queries, {len(failed)} with problems")
    if failed:
        raise typer.Exit(1)


async def run_checks(
    settings: Settings,
    bundle: Bundle,
    span: timedelta,
    choose: dict[str, str],
    *,
    strict: bool = True,
) -> list[PanelCheck]:
    """Every dashboard panel and alert rule query of ``bundle`` run with the read token."""
    now = datetime.now(UTC)
    window = QueryWindow(
        now - span,
        now,
        grafana_interval(span, PANEL_POINTS, timedelta(seconds=MIN_INTERVAL_S)),
        settings.influxdb.telemetry_bucket,
        settings.influxdb.org,
    )
    results = []
    async with InfluxSink(settings) as sink:
        for _, board in bundle.dashboards:
            results += await check_dashboard(board, sink.query, window, choose, strict=strict)
        for rule in group_rules(bundle.alerting.groups):
            results.append(await check_rule(rule, sink.query, window))
    return results


def _stack_read_token(settings: Settings) -> str | None:
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    try:
        return resolve_token(settings, READ_ROLE)
    except InfluxConfigError:
        return None
