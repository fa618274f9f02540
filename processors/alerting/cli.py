"""``kotaflow alert`` (run the evaluator) and ``kotaflow alerts ...`` (rules, silences, state).

Times given to ``silence add`` are read in WITA (Asia/Makassar) unless they carry an offset.
"""

from __future__ import annotations

import asyncio
import getpass
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from devices.fleet import load_fleet
from devices.sourcefile import DeviceFileError
from kotaflow.context import settings_of
from kotaflow.settings import Settings
from processors.alerting.rules import RulesError, load_rules, parse_duration
from processors.alerting.silences import Silence
from processors.alerting.state_store import AlertStore
from processors.alerting.templates import WITA

app = typer.Typer(
    help="Alert rules, silences and state.\n\nExample: kotaflow alerts check rules.yaml",
    no_args_is_help=True,
)
silence_app = typer.Typer(
    help="Silences and maintenance windows.\n\n"
    "Example: kotaflow alerts silence add --device rtg-rl-01 --duration 2h -m 'ganti sensor'",
    no_args_is_help=True,
)
app.add_typer(silence_app, name="silence")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def alert(ctx: typer.Context) -> None:
    """Evaluate alert rules on kotaflow.readings and send notifications (until Ctrl-C).

    Example: kotaflow alert
    """
    from kotaflow.kafka import KafkaAccessError
    from processors.alerting.service import run_alerting

    settings = settings_of(ctx)
    try:
        asyncio.run(run_alerting(settings))
    except RulesError as problem:
        err.print(f"[red]invalid rules[/red]\n{problem}")
        raise typer.Exit(2) from None
    except KafkaAccessError as problem:
        err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


@app.command()
def check(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Rule file to validate.")],
) -> None:
    """Validate a rule file (schema, level order, catalogue, receivers); exit 1 if invalid.

    Example: kotaflow alerts check processors/alerting/rules/manggarai.yaml
    """
    settings = settings_of(ctx)
    receivers = set(settings.alerting.receivers) or None
    try:
        fleet = load_fleet(settings)
        rules = load_rules(
            file,
            metrics=fleet.catalogue.metrics,
            types=fleet.catalogue.types,
            receivers=receivers,
        )
    except RulesError as problem:
        for line in problem.problems:
            err.print(str(line))
        err.print(f"[red]{len(problem.problems)} problem(s)[/red]")
        raise typer.Exit(1) from None
    except DeviceFileError as problem:
        err.print(f"[red]device files invalid, cannot check rules against them[/red]\n{problem}")
        raise typer.Exit(2) from None
    for rule in rules.rules:
        levels = " < ".join(level.name for level in rule.levels)
        out.print(f"{rule.name:24} {rule.kind.value:9} {rule.metric or '*':12} {levels}")
    out.print(f"[green]{file}: {len(rules.rules)} rules OK[/green]")


@app.command()
def status(ctx: typer.Context) -> None:
    """Alerts firing now (from the evaluator's saved state). Example: kotaflow alerts status"""
    store = _store(settings_of(ctx))
    table = Table(title="firing alerts")
    for column in ("rule", "device", "level", "value", "since (WITA)", "notified"):
        table.add_column(column)
    for rule, device, state in store.firing():
        since = _wita(state["started_ms"]) if state.get("started_ms") else "-"
        notified = "yes" if state.get("notified_level") else "no"
        table.add_row(rule, device, state["level"], f"{state['value']:g}", since, notified)
    out.print(table)


@app.command()
def outbox(ctx: typer.Context) -> None:
    """Messages per destination and status, with the last error. Example: kotaflow alerts outbox"""
    table = Table(title="alert outbox")
    for column in ("destination", "status", "count", "last error"):
        table.add_column(column)
    for destination, state, count, error in _store(settings_of(ctx)).outbox_summary():
        table.add_row(destination, state, str(count), error or "")
    out.print(table)


@silence_app.command("add")
def silence_add(
    ctx: typer.Context,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (required).")],
    rule: Annotated[str | None, typer.Option(help="Rule name or pattern, e.g. 'hujan_*'.")] = None,
    device: Annotated[str | None, typer.Option(help="Device id or pattern.")] = None,
    kecamatan: Annotated[str | None, typer.Option(help="Kecamatan name.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Device type.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Start, e.g. '2026-12-01 08:00' (WITA).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="End (WITA); or use --duration.")] = None,
    duration: Annotated[str | None, typer.Option(help="Length, e.g. 2h, 1d.")] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: login name).")] = None,
) -> None:
    """Silence matching alerts now, or a maintenance window later (with --start).

    Example: kotaflow alerts silence add --kecamatan Reok --start '2026-12-01 08:00'
    --duration 4h -m 'perbaikan jembatan Wae Pesi'
    """
    if not any((rule, device, kecamatan, type_)):
        err.print("[red]give at least one of --rule, --device, --kecamatan, --type[/red]")
        raise typer.Exit(2)
    if (end is None) == (duration is None):
        err.print("[red]give exactly one of --end or --duration[/red]")
        raise typer.Exit(2)
    now_ms = int(time.time() * 1000)
    try:
        starts_ms = _parse_time(start) if start else now_ms
        if end is not None:
            ends_ms = _parse_time(end)
        else:
            assert duration is not None
            ends_ms = starts_ms + int(parse_duration(duration).total_seconds() * 1000)
    except ValueError as problem:
        err.print(f"[red]{problem}[/red]")
        raise typer.Exit(2) from None
    if ends_ms <= max(starts_ms, now_ms):
        err.print("[red]the silence would end before it starts (or in the past)[/red]")
        raise typer.Exit(2)
    silence = Silence(
        id=uuid.uuid4().hex[:12],
        starts_ms=starts_ms,
        ends_ms=ends_ms,
        created_by=by or _login(),
        comment=comment,
        created_ms=now_ms,
        rule=rule,
        device=device,
        kecamatan=kecamatan,
        type=type_,
    )
    _store(settings_of(ctx)).add_silence(silence)
    out.print(
        f"silence {silence.id} {silence.matchers()} from {_wita(starts_ms)} until {_wita(ends_ms)}"
    )


@silence_app.command("list")
def silence_list(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="Include expired ones (last 7 days).")
    ] = False,
) -> None:
    """Active and scheduled silences. Example: kotaflow alerts silence list --all"""
    now_ms = int(time.time() * 1000)
    since = now_ms - 7 * 24 * 3600 * 1000 if all_ else now_ms
    table = Table(title="silences")
    for column in ("id", "state", "matches", "from (WITA)", "until (WITA)", "by", "comment"):
        table.add_column(column)
    for s in _store(settings_of(ctx)).silences(include_expired_after_ms=since):
        matches = " ".join(f"{k}={v}" for k, v in s.matchers().items())
        table.add_row(
            s.id,
            s.state(now_ms).value,
            matches,
            _wita(s.starts_ms),
            _wita(s.ends_ms),
            s.created_by,
            s.comment,
        )
    out.print(table)


@silence_app.command("expire")
def silence_expire(
    ctx: typer.Context,
    silence_id: Annotated[str, typer.Argument(help="Silence id (or a unique prefix).")],
) -> None:
    """End a silence now. Example: kotaflow alerts silence expire 3f2a9c"""
    expired = _store(settings_of(ctx)).expire_silence(silence_id, int(time.time() * 1000))
    if expired is None:
        err.print(f"[red]no single silence matches {silence_id!r}[/red]")
        raise typer.Exit(1)
    out.print(f"silence {expired.id} expired at {_wita(expired.ends_ms)}")


def _store(settings: Settings) -> AlertStore:
    return AlertStore(settings.alerting.state_path(settings.stack.state_dir))


def _parse_time(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use e.g. '2026-12-01 08:00'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=WITA)
    return int(moment.timestamp() * 1000)


def _wita(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, WITA).strftime("%Y-%m-%d %H:%M")


def _login() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "unknown"
