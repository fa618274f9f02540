"""The ``kotaflow`` command: one entry point, one sub-command group per part of the flow.

Each part owns its commands in its own module and is registered here with one line.
Settings are loaded once per invocation (``--config`` or ``KOTAFLOW_CONFIG``) and handed to
the command through the typer context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kotaflow.context import AppContext
from kotaflow.logs import setup_logging

app = typer.Typer(
    name="kotaflow",
    help=(
        "kotaflow: IoT sensor ingestion for smart cities.\n\n"
        "Example: kotaflow --config kotaflow.yaml stack up"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="KOTAFLOW_CONFIG",
            help="YAML settings file (optional; KOTAFLOW_* environment variables override it).",
        ),
    ] = None,
) -> None:
    ctx.obj = AppContext(config_file=config)


def _register() -> None:
    from deploy.grafana.cli import app as grafana_app
    from deploy.local.cli import app as stack_app
    from devices.cli import app as devices_app
    from devices.simulator.cli import simulate as simulate_command
    from ingest.cli import bridge as bridge_command
    from processors.alerting.cli import alert as alert_command
    from processors.alerting.cli import app as alerts_app
    from processors.cli import process as process_command

    app.add_typer(stack_app, name="stack")
    app.command("process")(process_command)
    app.add_typer(devices_app, name="devices")
    app.command("bridge")(bridge_command)
    app.command("alert")(alert_command)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(grafana_app, name="grafana")
    app.command("simulate")(simulate_command)


_register()


@app.command()
def run(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(help="Simulated readings per second.")] = 200.0,
    faults: Annotated[
        str, typer.Option(help="Fault mix for the simulator, kind=fraction,...")
    ] = "malformed=0.01,out_of_range=0.01,duplicate=0.01,late=0.005",
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
) -> None:
    """Run the whole pipeline with simulated devices on the local stack, showing live rates.

    Example: kotaflow run --rate 500 --duration 60
    """
    from kotaflow.context import settings_of
    from kotaflow.run import run_pipeline

    root = ctx.find_root()
    group = root.command
    available = set(group.commands) if isinstance(group, typer.core.TyperGroup) else set()
    config = root.obj.config_file if isinstance(root.obj, AppContext) else None
    run_pipeline(settings_of(ctx), available, config, rate, faults, duration)


def main() -> None:
    setup_logging()
    app()
