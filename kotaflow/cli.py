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
    from deploy.local.cli import app as stack_app

    app.add_typer(stack_app, name="stack")


_register()


def main() -> None:
    setup_logging()
    app()
