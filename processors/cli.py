"""``kotaflow process``: run the stream processors (validate, store, aggregate)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from kotaflow.context import settings_of


def process(
    ctx: typer.Context,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            "-s",
            help="validate | store | aggregate | all (repeatable; default all).",
        ),
    ] = None,
) -> None:
    """Consume kotaflow.raw/readings and write readings, rollups and dead letters.

    Each stage is its own Kafka consumer group, so more processes share the partitions.
    Stops cleanly (flush, commit) on SIGTERM or Ctrl-C.

    Example: kotaflow process --stage validate --stage store
    """
    from devices.sourcefile import DeviceFileError
    from kotaflow.kafka import KafkaAccessError
    from processors.runner import StageName, run_stages
    from processors.runtime.influx import InfluxConfigError

    try:
        names = [StageName(s) for s in stage or ["all"]]
    except ValueError:
        raise typer.BadParameter(
            f"--stage takes {', '.join(n.value for n in StageName)}", param_hint="--stage"
        ) from None
    settings = settings_of(ctx)
    try:
        asyncio.run(run_stages(settings, names))
    except (InfluxConfigError, KafkaAccessError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except DeviceFileError as err:  # the registry or catalogue validate would judge by
        for problem in err.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
