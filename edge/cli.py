"""``kotaflow edge``: run a store-and-forward gateway; ``kotaflow edge status``: its queue."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from devices.credentials import edge_account
from edge.gateway import Gateway
from edge.metrics import EdgeMetrics
from edge.queue import EdgeQueue
from kotaflow.context import settings_of
from kotaflow.logs import setup_logging
from kotaflow.mqtt import MqttAccessError, edge_local_access, mqtt_access
from kotaflow.settings import Settings

app = typer.Typer(
    name="edge",
    no_args_is_help=False,
    invoke_without_command=True,
)


def queue_path(settings: Settings) -> Path:
    return settings.edge.queue_file or settings.stack.state_dir / "edge" / "queue.db"


@app.callback()
def edge(ctx: typer.Context) -> None:
    """Take device messages from the local broker, keep them on disk, forward them to the
    central broker (``mqtt.*``, TLS with ``mqtt.tls``) and delete each after its PUBACK.

    The central login is ``mqtt.username`` if set, else the account
    ``kotaflow-edge-<edge.name>`` from the credentials file. With ``edge.device_id`` (the
    registry's gateway of this kecamatan) it reports its queue and link as that device's
    readings every ``edge.report_every_s``.

    Example: KOTAFLOW_EDGE__NAME=cibal KOTAFLOW_MQTT__TLS=true kotaflow edge
    Example: kotaflow edge status
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_of(ctx)
    setup_logging(settings.log_level)
    try:
        central = mqtt_access(settings, edge_account(settings.edge.name))
    except MqttAccessError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    store = EdgeQueue(
        queue_path(settings), settings.edge.budget_bytes, settings.edge.alarm_fraction
    )
    metrics = EdgeMetrics()
    if settings.edge.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.edge.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    client_id = settings.edge.central_client_id or f"kotaflow-edge-{settings.edge.name}"
    gateway = Gateway(
        settings.edge, store, edge_local_access(settings), central, client_id, metrics
    )

    def on_signal(_sig: int, _frame: Any) -> None:
        gateway.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner = threading.Thread(target=gateway.run, name="edge", daemon=True)
    runner.start()
    while runner.is_alive():
        runner.join(0.5)
    store.close()


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the queue file: messages and bytes waiting, oldest age, budget level.

    Example: kotaflow edge status --json
    """
    settings = settings_of(ctx)
    path = queue_path(settings)
    if not path.is_file():
        typer.echo(f"no edge queue at {path}", err=True)
        raise typer.Exit(1)
    store = EdgeQueue(path, settings.edge.budget_bytes, settings.edge.alarm_fraction)
    try:
        stats = store.stats()
    finally:
        store.close()
    report = {
        "queue_file": str(path),
        "messages": stats.messages,
        "bytes": stats.bytes,
        "budget_bytes": stats.budget_bytes,
        "level": stats.level.value,
        "oldest_age_s": round(stats.oldest_age_s(), 1),
        "refused": stats.refused,
    }
    if as_json:
        typer.echo(json.dumps(report))
        return
    for key, value in report.items():
        typer.echo(f"{key:>13}: {value}")
