"""``kotaflow bridge``: run the MQTT -> Kafka bridge until SIGTERM or SIGINT (then drain)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from ingest.bridge import Bridge
from ingest.sizes import SizeLimitError
from kotaflow.context import settings_of
from kotaflow.kafka import KafkaAccessError
from kotaflow.logs import setup_logging
from kotaflow.mqtt import MqttAccessError, wipe_mqtt_session


def bridge(
    ctx: typer.Context,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", help="Stable MQTT client id (one per bridge process)."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Prometheus port; 0 turns it off.")
    ] = None,
    forget_session: Annotated[
        str | None,
        typer.Option(
            "--forget-session",
            metavar="CLIENT_ID",
            help="End a stale bridge session (e.g. a client id used once) and exit; "
            "the broker then queues nothing more for it. Never the running bridge's id. "
            "Not on a listener with use_username_as_clientid (production): there every "
            "bridge session is the account's one, so this would end the running bridge's.",
        ),
    ] = None,
) -> None:
    """Carry device messages from Mosquitto to Kafka's raw topic, at least once.

    Run one or more of these with the same client id (one MQTT session per broker): a
    lease through Kafka makes one active, the others take over within seconds if it dies.

    Example: kotaflow bridge --metrics-port 9109
    Example: kotaflow bridge --forget-session kotaflow-bridge-2
    """
    settings = settings_of(ctx)
    if forget_session is not None:
        setup_logging(settings.log_level)
        if forget_session == settings.bridge.client_id:
            typer.echo(f"error: {forget_session} is this bridge's own session", err=True)
            raise typer.Exit(2)
        if not wipe_mqtt_session(settings, forget_session):
            raise typer.Exit(1)
        typer.echo(f"session {forget_session} ended")
        return
    changes: dict[str, object] = {}
    if client_id is not None:
        changes["client_id"] = client_id
    if metrics_port is not None:
        changes["metrics_port"] = metrics_port
    if changes:
        bridge_cfg = type(settings.bridge).model_validate(
            {**settings.bridge.model_dump(), **changes}
        )
        settings = settings.model_copy(update={"bridge": bridge_cfg})
    setup_logging(settings.log_level)
    try:
        runner = Bridge(settings)
    except (MqttAccessError, KafkaAccessError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        asyncio.run(_run(runner))
    except SizeLimitError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


async def _run(runner: Bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.run(stop)
