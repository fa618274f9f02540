"""``kotaflow alert`` (run the evaluator) and ``kotaflow alerts ...`` (rules, silences, state).

Times given to ``silence add`` are read in WITA (Asia/Makassar) unless they carry an offset.
"""

from __future__ import annotations

import asyncio
import getpass
import json
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
from kotaflow.durations import parse_duration
from kotaflow.settings import Settings
from kotaflow.wire.alerts import AlertEvent, Change, Severity
from processors.alerting.acks import parse_alert_id
from processors.alerting.checks import ConfigProblemsError, all_problems, silence_problems
from processors.alerting.model import RuleSet
from processors.alerting.routing import plans
from processors.alerting.rules import (
    RulesError,
    load_rules,
    rules_file_of,
    with_device_levels,
)
from processors.alerting.silences import Silence
from processors.alerting.state_store import AlertStore, NotFiringError
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
routes_app = typer.Typer(
    help="Notification routes (alerting.routes in the settings).\n\n"
    "Example: kotaflow alerts routes test --rule tinggi_muka_air --level Awas --kecamatan Reok",
    no_args_is_help=True,
)
app.add_typer(routes_app, name="routes")
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
    except ConfigProblemsError as problem:
        err.print(f"[red]invalid alerting configuration[/red]\n{problem}")
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
    """Validate a rule file, the devices' own levels, routes and receivers; exit 1 if invalid.

    Checks the schema, level order, catalogue, receivers and their secrets, routes that
    match nothing, unknown kecamatan and devices in scopes.

    Example: kotaflow alerts check processors/alerting/rules/manggarai.yaml
    """
    from processors.alerting.service import known_of

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
        rules = with_device_levels(rules, fleet.registry)
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
        own = f" (+{len(rule.device_levels)} devices with their own)" if rule.device_levels else ""
        out.print(f"{rule.name:24} {rule.kind.value:9} {rule.metric or '*':12} {levels}{own}")
    found = all_problems(settings.alerting, rules, known_of(fleet))
    if settings.alerting.dashboard_url is None:
        err.print("[yellow]alerting.dashboard_url is not set: messages carry no link[/yellow]")
    if found:
        for text in found:
            err.print(text, markup=False)
        err.print(f"[red]{len(found)} problem(s) in the alerting settings[/red]")
        raise typer.Exit(1)
    routes = len(settings.alerting.routes)
    out.print(f"[green]{file}: {len(rules.rules)} rules OK, {routes} route(s) OK[/green]")


JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Alerts firing now (from the evaluator's saved state), with who acknowledged them.

    Example: kotaflow alerts status --json
    """
    store = _store(settings_of(ctx))
    acks = store.acks()
    rows = []
    for rule, device, state in store.firing():
        ack = acks.get((rule, device))
        current = ack is not None and ack.started_ms == state["started_ms"]
        rows.append(
            {
                "id": f"{rule}/{device}",
                "rule": rule,
                "device": device,
                "level": state["level"],
                "value": state["value"],
                "started_ms": state["started_ms"],
                "notified": state.get("notified_level") is not None,
                "acked_by": ack.by if ack is not None and current else None,
                "acked_ms": ack.at_ms if ack is not None and current else None,
                "acked_level": ack.level if ack is not None and current else None,
                "ack_note": ack.note if ack is not None and current else None,
            }
        )
    if as_json:
        out.print(json.dumps({"firing": rows}, ensure_ascii=False), markup=False)
        return
    table = Table(title="firing alerts")
    for column in ("id", "level", "value", "since (WITA)", "notified", "acknowledged"):
        table.add_column(column)
    for row in rows:
        since = _wita(row["started_ms"]) if row["started_ms"] else "-"
        acked = "-"
        if row["acked_by"]:
            acked = f"{row['acked_by']} {_wita(row['acked_ms'])} ({row['acked_level']})"
        notified = "yes" if row["notified"] else "no"
        table.add_row(row["id"], row["level"], f"{row['value']:g}", since, notified, acked)
    out.print(table)


@app.command()
def outbox(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Messages per destination and status, with the last error. Example: kotaflow alerts outbox"""
    rows = _store(settings_of(ctx)).outbox_summary()
    if as_json:
        found = [
            {"destination": d, "status": s, "count": n, "last_error": e} for d, s, n, e in rows
        ]
        out.print(json.dumps({"outbox": found}, ensure_ascii=False), markup=False)
        return
    table = Table(title="alert outbox")
    for column in ("destination", "status", "count", "last error"):
        table.add_column(column)
    for destination, state, count, error in rows:
        table.add_row(destination, state, str(count), error or "")
    out.print(table)


@app.command()
def ack(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="<rule>/<device>, as 'alerts status' shows.")],
    note: Annotated[str, typer.Option("--message", "-m", help="What is being done.")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: login name).")] = None,
) -> None:
    """Acknowledge a firing alert: reminders and escalation stop until its level rises.

    Example: kotaflow alerts ack tinggi_muka_air/reo-rl-01 -m 'tim TRC menuju lokasi'
    """
    try:
        rule, device = parse_alert_id(alert_id)
        done = _store(settings_of(ctx)).acknowledge(
            rule, device, by or _login(), note, int(time.time() * 1000)
        )
    except (ValueError, NotFiringError) as problem:
        err.print(f"[red]{problem}[/red]")
        raise typer.Exit(1) from None
    out.print(f"{rule}/{device} acknowledged at {done.level} by {done.by} ({_wita(done.at_ms)})")


@routes_app.command("test")
def routes_test(
    ctx: typer.Context,
    rule: Annotated[str, typer.Option(help="Rule name (its labels are used).")],
    level: Annotated[
        str | None, typer.Option(help="Level name (default: the rule's first).")
    ] = None,
    kecamatan: Annotated[str, typer.Option(help="Kecamatan of the device.")] = "",
    severity: Annotated[
        Severity | None, typer.Option(help="Override the level's severity.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="Extra or overriding label, key=value.")
    ] = None,
    at: Annotated[str | None, typer.Option(help="When (WITA), e.g. '2026-12-01 22:00'.")] = None,
) -> None:
    """Show which routes and receivers an alert would reach (and whom it escalates to).

    Example: kotaflow alerts routes test --rule tinggi_muka_air --level Awas --kecamatan Reok
    """
    settings = settings_of(ctx)
    rules = _rules(settings)
    found = rules.by_name(rule)
    if found is None:
        err.print(f"[red]no rule {rule!r} in {rules.source}[/red]")
        raise typer.Exit(2)
    if kecamatan:
        _check_names(
            settings, rule=None, device=None, kecamatan=kecamatan, type_=None, checking="it"
        )
    levels = {lv.name: lv for lv in found.levels}
    for own in found.device_levels.values():
        levels |= {lv.name: lv for lv in own}
    chosen = levels.get(level or found.levels[0].name)
    if chosen is None:
        err.print(f"[red]rule {rule!r} has no level {level!r} (has: {', '.join(levels)})[/red]")
        raise typer.Exit(2)
    labels = dict(found.labels)
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]--label {item!r}: expected key=value[/red]")
            raise typer.Exit(2)
        labels[key] = value
    try:
        now_ms = _parse_time(at) if at else int(time.time() * 1000)
    except ValueError as problem:
        err.print(f"[red]{problem}[/red]")
        raise typer.Exit(2) from None
    event = AlertEvent(
        id=f"{rule}/test/0", rule=rule, device="test", type="", kecamatan=kecamatan,
        metric=found.metric, unit="", change=Change.FIRED, level=chosen.name,
        previous_level=None, severity=severity or chosen.severity,
        value=None, threshold=None, at_ms=now_ms, started_ms=now_ms, labels=labels,
        receivers=found.receivers, notify=True,
    )  # fmt: skip
    seen: list[str] = []
    for plan in plans(event, settings.alerting, now_ms):
        extra = f", group {plan.group_window_ms // 1000}s" if plan.group_window_ms else ""
        if plan.escalate_after_ms is not None and plan.escalate_to:
            minutes = plan.escalate_after_ms / 60000
            extra += f", unacknowledged {minutes:g} min -> {', '.join(plan.escalate_to)}"
        out.print(f"{plan.name}: {', '.join(plan.receivers) or '(nobody)'}{extra}")
        seen += [r for r in plan.receivers if r not in seen]
    out.print(f"receivers: {', '.join(seen) or '(nobody)'}")


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
    force: Annotated[
        bool, typer.Option(help="Accept names the registry does not know (a new device).")
    ] = False,
) -> None:
    """Silence matching alerts now, or a maintenance window later (with --start).

    A kecamatan, device, type or rule that does not exist is refused (with a suggestion):
    such a silence would silence nothing.

    Example: kotaflow alerts silence add --kecamatan Reok --start '2026-12-01 08:00'
    --duration 4h -m 'perbaikan jembatan Wae Pesi'
    """
    if not any((rule, device, kecamatan, type_)):
        err.print("[red]give at least one of --rule, --device, --kecamatan, --type[/red]")
        raise typer.Exit(2)
    settings = settings_of(ctx)
    if not force:
        _check_names(settings, rule=rule, device=device, kecamatan=kecamatan, type_=type_)
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
    _store(settings).add_silence(silence)
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


def _rules(settings: Settings) -> RuleSet:
    try:
        fleet = load_fleet(settings)
        rules = load_rules(rules_file_of(settings.alerting))
        return with_device_levels(rules, fleet.registry)
    except (RulesError, DeviceFileError) as problem:
        err.print(f"[red]cannot load the rules[/red]\n{problem}")
        raise typer.Exit(2) from None


def _check_names(
    settings: Settings,
    *,
    rule: str | None,
    device: str | None,
    kecamatan: str | None,
    type_: str | None,
    checking: str = "the silence",
) -> None:
    """Refuse names that do not exist: a silence naming one would silence nothing, a route
    test would show the routes of an alert that cannot happen."""
    from processors.alerting.service import known_of

    try:
        fleet = load_fleet(settings)
    except DeviceFileError as problem:
        err.print(f"[red]device files invalid, cannot check {checking}[/red]\n{problem}")
        raise typer.Exit(2) from None
    try:
        rules: RuleSet | None = load_rules(rules_file_of(settings.alerting))
    except RulesError:
        rules = None
    problems = silence_problems(
        known_of(fleet), rules, rule=rule, device=device, kecamatan=kecamatan, type_=type_
    )
    if problems:
        for line in problems:
            err.print(f"[red]{line}[/red]")
        raise typer.Exit(2)


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
