"""``kotaflow deadletter list|show|stats|replay``: read, count and replay dead letters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from devices.fleet import load_fleet
from devices.sourcefile import DeviceFileError
from kotaflow.context import settings_of
from kotaflow.names import unknown
from kotaflow.settings import Settings
from kotaflow.wire.reasons import Reason
from processors.deadletters import replay as replaying
from processors.deadletters.reader import (
    LetterFilter,
    Reading,
    iso,
    letter_json,
    parse_id,
    parse_time,
    read_letters,
    stats,
)

app = typer.Typer(
    help="Dead letters on kotaflow.deadletter: read them, count them, replay them.\n\n"
    "Example: kotaflow deadletter stats --since 1h && "
    "kotaflow deadletter replay --reason unknown_device --device rtg-aq-09 --dry-run",
    no_args_is_help=True,
)
errors = Console(stderr=True, highlight=False)
REASONS = frozenset(r.value for r in Reason)

Reasons = Annotated[
    list[str] | None, typer.Option("--reason", "-r", help="Only this reason (repeatable).")
]
Devices = Annotated[
    list[str] | None, typer.Option("--device", "-d", help="Only this device (repeatable).")
]
Stages = Annotated[
    list[str] | None,
    typer.Option("--stage", "-s", help="Only this stage: bridge, validate, store, ..."),
]
Since = Annotated[
    str | None, typer.Option(help="Dead-lettered at or after: an age (15m, 2h, 3d) or ISO time.")
]
Until = Annotated[str | None, typer.Option(help="Dead-lettered before: an age or ISO time.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _filter(
    reasons: list[str] | None,
    devices: list[str] | None,
    stages: list[str] | None,
    since: str | None,
    until: str | None,
    ids: list[str] | None = None,
) -> LetterFilter:
    for name in reasons or ():
        if name not in REASONS:  # a typo would match nothing and say nothing
            problem = unknown("reason", name, REASONS) or f"unknown reason {name!r}"
            raise typer.BadParameter(f"{problem} (known: {', '.join(sorted(REASONS))})")
    try:
        for ident in ids or ():
            parse_id(ident)
        return LetterFilter(
            reasons=frozenset(reasons or ()),
            devices=frozenset(devices or ()),
            stages=frozenset(stages or ()),
            ids=frozenset(ids or ()),
            since_ms=parse_time(since) if since else None,
            until_ms=parse_time(until) if until else None,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _read(settings: Settings, wanted: LetterFilter, limit: int | None = None) -> Reading:
    found = asyncio.run(read_letters(settings, wanted, limit))
    for bad in found.unreadable:
        errors.print(f"[yellow]warning:[/yellow] {bad.id}: {bad.error}")
    return found


@app.command("list")
def list_letters(
    ctx: typer.Context,
    reason: Reasons = None,
    device: Devices = None,
    stage: Stages = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many (the newest).")] = 100,
    as_json: AsJson = False,
) -> None:
    """List dead letters, oldest first.

    Example: kotaflow deadletter list --reason unknown_device --since 2h
    """
    settings = settings_of(ctx)
    found = _read(settings, _filter(reason, device, stage, since, until), limit)
    if as_json:
        typer.echo(json.dumps([letter_json(s) for s in found.letters], indent=2))
        return
    table = Table(title=f"{settings.kafka.topics.deadletter}: {len(found.letters)} shown")
    for column in ("id", "at (UTC)", "stage", "reason", "device", "metric", "message"):
        table.add_column(column, overflow="fold")
    for s in found.letters:
        letter = s.letter
        table.add_row(
            s.id,
            iso(letter.at_ms)[:23],
            letter.stage,
            letter.reason.value,
            letter.device or "",
            letter.metric or "",
            letter.message,
        )
    Console().print(table)


@app.command()
def show(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(help="Dead-letter ids (<partition>:<offset>).")],
    as_json: AsJson = False,
) -> None:
    """Show dead letters in full: reason, message, where they came from, the payload.

    Example: kotaflow deadletter show 0:42
    """
    found = _read(settings_of(ctx), _filter(None, None, None, None, None, ids))
    shown = [letter_json(s, with_payload=True) for s in found.letters]
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
    else:
        for item in shown:
            for key, value in item.items():
                text = json.dumps(value) if isinstance(value, dict) else value
                typer.echo(f"{key:>14}: {text}")
            typer.echo("")
    if len(found.letters) < len(set(ids)):
        raise typer.Exit(1)


@app.command("stats")
def stats_command(
    ctx: typer.Context,
    reason: Reasons = None,
    device: Devices = None,
    stage: Stages = None,
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
) -> None:
    """Count dead letters by reason, stage and device, and per minute by reason.

    Example: kotaflow deadletter stats --since 1h --json
    """
    wanted = _filter(reason, device, stage, since, until)
    found = _read(settings_of(ctx), wanted)
    now_ms = wanted.until_ms if wanted.until_ms is not None else None
    figures = stats(found.letters, now_ms)
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    typer.echo(f"{figures['total']} dead letters" + _span(figures))
    per_minute = figures.get("per_minute_by_reason", {})
    for title, counts in (
        ("reason", figures["by_reason"]),
        ("stage", figures["by_stage"]),
        ("device", figures["by_device"]),
    ):
        table = Table(title=f"by {title}")
        table.add_column(title)
        table.add_column("count", justify="right")
        if title == "reason":
            table.add_column("per minute", justify="right")
        for name, count in list(counts.items())[:20]:
            row = [name or "(unknown)", str(count)]
            if title == "reason":
                row.append(f"{per_minute.get(name, 0):g}")
            table.add_row(*row)
        Console().print(table)


def _span(figures: dict[str, Any]) -> str:
    return f", {figures['first']} .. {figures['last']}" if figures.get("first") else ""


@app.command()
def replay(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Dead-letter ids (<partition>:<offset>).")
    ] = None,
    reason: Reasons = None,
    device: Devices = None,
    stage: Stages = None,
    since: Since = None,
    until: Until = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would happen, send nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send also what today's files would refuse again.")
    ] = False,
    again: Annotated[
        bool, typer.Option("--again", help="Send also what the replay log says was replayed.")
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option("--log", help="Replay log (default: <state>/deadletter/replays.jsonl)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Re-submit dead letters to the stage that refused them, with their receive time.

    Each is sent with its original bytes, after checking it with today's registry and
    catalogue.

    Take them by id or by filter (at least one: replaying everything is never implied).
    What would be refused again is not sent (it would only be dead-lettered again) unless
    --force; what was replayed before is skipped unless --again (replaying twice stores
    nothing new either way). Each replay is logged (who, when, which) and written to the
    health measurement.

    Example: kotaflow deadletter replay --reason unknown_device --device rtg-aq-09 --dry-run
    """
    settings = settings_of(ctx)
    wanted = _filter(reason, device, stage, since, until, ids)
    if not wanted.narrows:
        raise typer.BadParameter("name dead-letter ids or give a filter (--reason, --since, ...)")
    try:
        fleet = load_fleet(settings)
    except DeviceFileError as err:
        for problem in err.problems:
            errors.print(f"[red]error:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(1) from None
    found = _read(settings, wanted)
    log = log_file or replaying.default_log(settings)
    originals = asyncio.run(replaying.fetch_originals(settings, found.letters))
    already = replaying.replayed_ids(log, settings.kafka.topics.deadletter)
    plans = replaying.plan(
        settings, fleet, found.letters, originals, already, force=force, again=again
    )
    record = replaying.summary(settings, plans)
    if not dry_run and record.replayed:
        asyncio.run(replaying.send(settings, plans))
        replaying.append_log(log, record)
        _write_health(settings, record)
    _print_plans(plans, record.as_json(), dry_run, as_json)


def _write_health(settings: Settings, record: replaying.ReplayRecord) -> None:
    from processors.runtime.influx import InfluxConfigError, InfluxSink

    lines = replaying.health_lines(settings, record)
    bucket = settings.processing.health.bucket or settings.influxdb.rollups_bucket

    async def write() -> None:
        async with InfluxSink(settings) as sink:
            await asyncio.wait_for(sink.write(bucket, lines), 30)

    try:
        asyncio.run(write())
    except (InfluxConfigError, OSError, TimeoutError) as err:
        errors.print(f"[yellow]warning:[/yellow] replay not written to the health figures: {err}")


def _print_plans(
    plans: list[replaying.Plan], summary: dict[str, Any], dry_run: bool, as_json: bool
) -> None:
    if as_json:
        out = {"dry_run": dry_run, "summary": summary, "letters": [p.as_json() for p in plans]}
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title="replay (dry run)" if dry_run else "replay")
    for column in ("id", "stage", "reason", "device", "action", "readings", "now refused", "note"):
        table.add_column(column, overflow="fold")
    for p in plans:
        table.add_row(
            p.id,
            p.stage,
            p.reason,
            p.device or "",
            p.action.value,
            str(p.readings),
            "; ".join(p.refusals),
            p.note,
        )
    Console().print(table)
    verb = "would replay" if dry_run else "replayed"
    typer.echo(
        f"{verb} {summary['replayed']} ({summary['sent']} records); "
        f"still refused {summary['still_refused']}; "
        f"skipped {summary['skipped']}"
    )
