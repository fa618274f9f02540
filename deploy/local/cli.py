"""``kotaflow stack up|down|status``: run the local services on loopback, no Docker needed."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.local import stack
from deploy.local.service import ServiceError, ServiceStatus
from kotaflow.context import settings_of
from kotaflow.settings import Settings, StackSettings

app = typer.Typer(
    help="Install and run the local stack (Mosquitto, Kafka, InfluxDB) on 127.0.0.1.\n\n"
    "Example: kotaflow stack up && kotaflow stack status --json",
    no_args_is_help=True,
)
console = Console(stderr=True, highlight=False)


KafkaBrokers = Annotated[
    int | None,
    typer.Option(
        "--kafka-brokers",
        help="1: one Kafka node; 3: a KRaft cluster of three on the next ports "
        "(default: stack.kafka_brokers). Give it to up, status and down alike.",
    ),
]


def _settings(ctx: typer.Context, kafka_brokers: int | None) -> Settings:
    settings = settings_of(ctx)
    if kafka_brokers is None:
        return settings
    try:
        stack_settings = StackSettings.model_validate(
            {**settings.stack.model_dump(), "kafka_brokers": kafka_brokers}
        )
    except ValueError:
        raise typer.BadParameter("1 or 3", param_hint="--kafka-brokers") from None
    return settings.model_copy(update={"stack": stack_settings})


def _report(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}")


@app.command()
def up(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Start just these services.")
    ] = None,
    kafka_brokers: KafkaBrokers = None,
) -> None:
    """Install what is missing and start every service (idempotent).

    Example: kotaflow stack up --only mosquitto --only kafka

    A 3-broker Kafka beside the stack: KOTAFLOW_STACK__STATE_DIR=/tmp/k3
    KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092 kotaflow stack up --only kafka
    --kafka-brokers 3
    """
    started = time.monotonic()
    try:
        statuses = stack.up(_settings(ctx, kafka_brokers), _report, set(only) if only else None)
    except ServiceError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    _print_table(statuses)
    _report(f"stack up in {time.monotonic() - started:.1f}s")
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@app.command()
def down(
    ctx: typer.Context,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete all data and logs.")] = False,
    kafka_brokers: KafkaBrokers = None,
) -> None:
    """Stop what ``up`` started. Example: kotaflow stack down --purge"""
    stack.down(_settings(ctx, kafka_brokers), _report, purge=purge)


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    kafka_brokers: KafkaBrokers = None,
) -> None:
    """Health, address and version of each service; exit 1 if any is unhealthy.

    Example: kotaflow stack status --json
    """
    statuses = stack.status(_settings(ctx, kafka_brokers))
    if as_json:
        typer.echo(json.dumps({"services": [s.to_json() for s in statuses]}, indent=2))
    else:
        _print_table(statuses)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


def _print_table(statuses: list[ServiceStatus]) -> None:
    table = Table(title="kotaflow local stack")
    for column in ("service", "health", "address", "version", "pid", "log"):
        table.add_column(column)
    for s in statuses:
        health = "[green]healthy[/green]" if s.healthy else f"[red]down[/red] {s.detail}"
        table.add_row(s.name, health, s.address, s.version or "-", str(s.pid or "-"), s.log or "-")
    Console(highlight=False).print(table)
