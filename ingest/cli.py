"""``kotaflow bridge``: run the MQTT -> Kafka bridge until SIGTERM or SIGINT (then drain)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from ingest.bridge import Bridge
from kotaflow.context import settings_of
from kotaflow.kafka import KafkaAccessError
from kotaflow.logs import setup_logging
from kotaflow.mqtt import MqttAccessError


def bridge(
    ctx: typer.Context,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", help="Stable MQTT client id (one per bridge process)."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Prometheus port; 0 turns it off.")
    ] = None,
) -> None:
    """Carry device messages from Mosquitto to Kafka's raw topic, at least once.

    Run N of these with different client ids to share the load (one shared subscription).

    Example: kotaflow bridge --client-id kotaflow-bridge-2 --metrics-port 9109
    """
    settings = settings_of(ctx)
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
    asyncio.run(_run(runner))


async def _run(runner: Bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.run(stop)
