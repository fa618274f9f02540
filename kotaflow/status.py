"""``kotaflow status``: the pipeline's parts and the local stack's services, at a glance.

Exit code 0 when every part and service is healthy, 1 otherwise, so a systemd timer or a
monitoring check can run it.

Part of the CLI's roof, not of the foundation: it joins what ``processors.status`` reads
with the stack's services from ``deploy.local`` (imported inside the command, so
``kotaflow --help`` stays fast). Only :mod:`kotaflow.cli` imports it; no foundation module
may (``tests/kotaflow/test_foundation.py``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kotaflow.context import settings_of


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    no_stack: Annotated[
        bool, typer.Option("--no-stack", help="Skip the local stack's services (remote Kafka).")
    ] = False,
) -> None:
    """The pipeline's health: every part, dead letters, firing alerts, the services.

    Every part (bridge, stages, alert: alive or stopped, lag, last write), dead letters
    per minute by reason, firing alerts and the local stack's services.

    Exits 1 when something is unhealthy.

    Example: kotaflow status --json | jq '.parts[] | select(.healthy | not)'
    """
    from deploy.local import stack
    from processors.status import pipeline_status

    settings = settings_of(ctx)
    found = asyncio.run(pipeline_status(settings))
    services = [] if no_stack else stack.status(settings)
    healthy = found.healthy and all(s.healthy for s in services)
    if as_json:
        out: dict[str, Any] = found.as_json()
        out["services"] = [_service_json(s) for s in services]
        out["healthy"] = healthy
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        _print(found, services)
    if not healthy:
        raise typer.Exit(1)


def _service_json(service: Any) -> dict[str, Any]:
    try:
        return asdict(service)
    except TypeError:
        return {"name": getattr(service, "name", "?"), "healthy": service.healthy}


def _print(found: Any, services: list[Any]) -> None:
    console = Console()
    table = Table(title="pipeline")
    for column in ("part", "state", "members", "lag", "last write", "detail"):
        table.add_column(column, overflow="fold")
    for p in found.parts:
        style = "green" if p.healthy else "red"
        table.add_row(
            p.name,
            Text(p.state, style),
            "" if p.members is None else str(p.members),
            "" if p.lag is None else str(p.lag),
            p.last_write or "",
            p.detail,
        )
    console.print(table)
    if services:
        stack_table = Table(title="stack")
        for column in ("service", "health"):
            stack_table.add_column(column)
        for s in services:
            health = Text("healthy" if s.healthy else "unhealthy", "green" if s.healthy else "red")
            stack_table.add_row(s.name, health)
        console.print(stack_table)
    rates = ", ".join(f"{r} {n:g}/min" for r, n in found.deadletters_per_minute.items())
    console.print(f"dead letters (last 5 min): {rates or 'none'}")
    firing = ", ".join(f"{a['rule']}@{a['device']} ({a['level']})" for a in found.firing)
    console.print(f"firing alerts: {firing or 'none'}")
    for problem in found.problems:
        console.print(f"[yellow]could not read[/yellow] {problem}")
