"""The ``kotaflow`` command: one entry point, one sub-command group per part of the flow.

Each part owns its commands in its own module and is registered here with one line.
Settings are loaded once per invocation (``--config`` or ``KOTAFLOW_CONFIG``) and handed to
the command through the typer context.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer

from kotaflow.context import AppContext
from kotaflow.logs import setup_logging

_app = typer.Typer(
    name="kotaflow",
    help=(
        "kotaflow: IoT sensor ingestion for smart cities.\n\n"
        "Example: kotaflow --config kotaflow.yaml stack up"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_registered: set[str] = set()


@_app.callback()
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


def _stack() -> None:
    from deploy.local.cli import app as stack_app

    _app.add_typer(stack_app, name="stack")


def _kafka() -> None:
    from deploy.kafka_cli import app as kafka_app

    _app.add_typer(kafka_app, name="kafka")


def _devices() -> None:
    from devices.cli import app as devices_app

    _app.add_typer(devices_app, name="devices")


def _simulate() -> None:
    from devices.simulator.cli import simulate

    _app.command("simulate")(simulate)


def _bridge() -> None:
    from ingest.cli import bridge

    _app.command("bridge")(bridge)


def _edge() -> None:
    from edge.cli import app as edge_app

    _app.add_typer(edge_app, name="edge")


def _process() -> None:
    from processors.cli import process

    _app.command("process")(process)


def _alert() -> None:
    from processors.alerting.cli import alert

    _app.command("alert")(alert)


def _public() -> None:
    from processors.public.cli import public

    _app.command("public")(public)


def _alerts() -> None:
    from processors.alerting.cli import app as alerts_app

    _app.add_typer(alerts_app, name="alerts")


def _deadletter() -> None:
    from processors.deadletters.cli import app as deadletter_app

    _app.add_typer(deadletter_app, name="deadletter")


def _status() -> None:
    from kotaflow.status import status

    _app.command("status")(status)


def _grafana() -> None:
    from deploy.grafana.cli import app as grafana_app

    _app.add_typer(grafana_app, name="grafana")


def _influxdb() -> None:
    from deploy.influxdb.cli import app as influxdb_app

    _app.add_typer(influxdb_app, name="influxdb")


def _backup() -> None:
    from deploy.backup.cli import backup

    _app.command("backup")(backup)


def _restore() -> None:
    from deploy.backup.cli import restore

    _app.command("restore")(restore)


def _bench() -> None:
    try:
        from benchmarks.cli import bench
    except ModuleNotFoundError as err:
        if err.name != "benchmarks":
            raise
        return  # benchmarks/ lives in the repository only, not in the wheel or the image
    _app.command("bench")(bench)


PARTS: dict[str, Callable[[], None]] = {
    "stack": _stack,
    "kafka": _kafka,
    "devices": _devices,
    "simulate": _simulate,
    "bridge": _bridge,
    "edge": _edge,
    "process": _process,
    "alert": _alert,
    "alerts": _alerts,
    "public": _public,
    "deadletter": _deadletter,
    "status": _status,
    "grafana": _grafana,
    "influxdb": _influxdb,
    "backup": _backup,
    "restore": _restore,
    "bench": _bench,
}
"""One line per command group. Each is imported only when its command runs, so a long-lived
process (the bridge, say) carries no other part's modules: less memory, faster restarts."""


def _register(names: Iterable[str]) -> None:
    for name in names:
        if name not in _registered:
            _registered.add(name)
            PARTS[name]()


def _command_named(argv: list[str]) -> str | None:
    """The sub-command in ``argv`` (skipping the root's ``--config FILE``), if known."""
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "-c"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in PARTS else None
    return None


@_app.command()
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
    available = set(PARTS)
    config = root.obj.config_file if isinstance(root.obj, AppContext) else None
    run_pipeline(settings_of(ctx), available, config, rate, faults, duration)


def __getattr__(name: str) -> typer.Typer:
    """``kotaflow.cli.app``: the command with every part registered (tests, docs)."""
    if name == "app":
        _register(PARTS)
        return _app
    raise AttributeError(name)


def main() -> None:
    setup_logging()
    wanted = _command_named(sys.argv[1:])
    _register([wanted] if wanted else PARTS)
    _app()
