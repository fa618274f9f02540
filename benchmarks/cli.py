"""``kotaflow bench``: run the benchmark scenarios, print a table each, keep JSON results."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from kotaflow.context import settings_of


def bench(
    ctx: typer.Context,
    scenarios: Annotated[
        list[str] | None,
        typer.Argument(
            help="bridge | bridge-steady | process | late | e2e | alert | public | startup | "
            "peers (default: all, in that order).",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller runs: all of them in a few minutes.")
    ] = False,
    results: Annotated[
        Path, typer.Option("--results", help="Directory for the JSON result files.")
    ] = Path("bench-results"),
) -> None:
    """Measure throughput, latency, memory and CPU of each stage and end to end.

    Needs the local stack (kotaflow stack up). Every scenario uses its own topics, consumer
    groups, MQTT session and InfluxDB buckets.

    Each prints one table and writes RESULTS/<start time>-<scenario>.json (schema
    kotaflow.bench.result/1). Exit code 1 if a scenario failed to run; missed targets are
    reported in the tables, not failures.

    `peers` runs kotaflow beside Telegraf (built once from the Go module proxy, ~4 min)
    and a Quix Streams app: see docs/benchmarks.md.

    Example: kotaflow bench --quick  (all in a few minutes; or: kotaflow bench e2e,
    kotaflow bench peers --quick)
    """
    from rich.console import Console

    from benchmarks.report import Stopwatch, render, write_result
    from benchmarks.scenarios import UnknownScenarioError, chosen
    from kotaflow.logs import setup_logging

    try:
        selected = chosen(scenarios or [])
    except UnknownScenarioError as err:
        raise typer.BadParameter(str(err), param_hint="SCENARIO") from None
    settings = settings_of(ctx)
    setup_logging("WARNING")  # the scenarios' children log to files; keep this terminal clean
    console = Console(width=None if Console().is_terminal else 120)
    failed = []
    for scenario in selected:
        console.rule(f"{scenario.name}: {scenario.summary}")
        watch = Stopwatch()
        began = time.monotonic()
        try:
            result = asyncio.run(scenario.load()(settings, quick))
        except Exception as err:  # report and go on with the next scenario
            console.print(f"[red]{scenario.name} failed:[/red] {type(err).__name__}: {err}")
            failed.append(scenario.name)
            continue
        watch.stamp(result, time.monotonic() - began)
        console.print(render(result))
        console.print(f"[dim]result: {write_result(result, results)}[/dim]")
    if failed:
        console.print(f"[red]failed:[/red] {', '.join(failed)}")
        raise typer.Exit(1)
