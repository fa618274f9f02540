"""``kotaflow simulate``: publish as the registry's devices, with live progress and a summary."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from devices.simulator.faults import FaultMix
from devices.simulator.options import (
    FormatChoice,
    OptionsError,
    SimulationOptions,
    broker_address,
)
from devices.simulator.plan import PlanError
from devices.simulator.publisher import PublishError
from devices.simulator.runner import run_simulation
from devices.simulator.summary import Summary
from devices.sourcefile import DeviceFileError
from kotaflow.context import settings_of
from kotaflow.settings import Settings

errors = Console(stderr=True, highlight=False)


def simulate(
    ctx: typer.Context,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Readings per second over all devices [default: each device at its "
            "catalogue interval, times --time-scale]."
        ),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    count: Annotated[
        int | None, typer.Option(help="Stop after exactly this many readings.")
    ] = None,
    fmt: Annotated[
        FormatChoice,
        typer.Option(
            "--format",
            help="Payload format; mixed: TTS ids use tts, other "
            "DevEUIs chirpstack, the rest native or senml.",
        ),
    ] = FormatChoice.MIXED,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Only these devices: comma-separated globs on id or type "
            "(e.g. 'rtg-*,river_level')."
        ),
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault shares: KIND=SHARE,... with KIND in malformed, "
            "out_of_range, duplicate, late, skew (of messages) and silent (of devices)."
        ),
    ] = "",
    seed: Annotated[int, typer.Option(help="Same seed, same traffic.")] = 1,
    time_scale: Annotated[
        float,
        typer.Option(
            help="Signals run this many times faster than the clock (1440: a day per minute)."
        ),
    ] = 1.0,
    start: Annotated[
        str | None,
        typer.Option(
            help="Simulated start of the signals, ISO 8601 with offset "
            "(e.g. 2027-01-15T13:00+08:00) [default: now]."
        ),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Write one JSON line per message sent (JSONL).")
    ] = None,
    max_inflight: Annotated[int, typer.Option(help="Unacknowledged QoS 1 messages at most.")] = 500,
    trace: Annotated[
        bool, typer.Option(help="Tag messages with the MQTT 5 user property kf-sim.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
    behind_edge: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of an edge gateway's local broker (kotaflow edge): the "
            "--edge-devices publish there instead of centrally.",
        ),
    ] = None,
    edge_devices: Annotated[
        str | None,
        typer.Option(
            help="With --behind-edge: the devices behind it, comma-separated globs on id, "
            "type or kecamatan (e.g. 'Reok,nrg-*'); none given: every device.",
        ),
    ] = None,
) -> None:
    """Publish simulated Manggarai field-device traffic over MQTT (QoS 1, MQTT 5).

    Realistic signals: highland diurnal temperature, afternoon storms and
    rising rivers, traffic-hour PM2.5 and noise, water demand, streetlights
    at night. Faults in exact proportions, a target rate, live progress and
    a final summary. Stops at --duration, --count or Ctrl-C (or SIGTERM),
    then waits for the last PUBACKs.

    Example: kotaflow simulate --rate 2000 --duration 60 --faults malformed=0.01,silent=0.05

    Example: kotaflow simulate --behind-edge 127.0.0.1:1884 --edge-devices Reok --time-scale 30
    """
    try:
        options = SimulationOptions(
            rate=rate,
            duration_s=duration,
            count=count,
            format=fmt,
            devices=_patterns(devices),
            faults=FaultMix.parse(faults),
            seed=seed,
            time_scale=time_scale,
            start=datetime.fromisoformat(start) if start else None,
            manifest=manifest,
            max_inflight=max_inflight,
            trace=trace,
            behind_edge=broker_address(behind_edge) if behind_edge else None,
            edge_devices=_patterns(edge_devices),
        )
    except (OptionsError, ValueError) as err:
        errors.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    settings = settings_of(ctx)
    try:
        summary = asyncio.run(_run(settings, options))
    except (PlanError, PublishError) as err:
        errors.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    except DeviceFileError as err:
        for problem in err.problems:
            errors.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2))
    else:
        Console().print(summary_table(summary))
    if summary.unacked or summary.refused:
        raise typer.Exit(1)


def _patterns(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


async def _run(settings: Settings, options: SimulationOptions) -> Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with Live(console=errors, refresh_per_second=4, transient=True) as live:
        return await run_simulation(
            settings, options, stop=stop, on_progress=lambda s: live.update(progress_line(s))
        )


def progress_line(summary: Summary) -> str:
    faulty = sum(c.messages for k, c in summary.kinds.items() if k != "normal")
    return (
        f"[bold]simulate[/bold] {summary.duration_s:6.1f} s  "
        f"{summary.messages:,} messages  {summary.readings:,} readings  "
        f"{summary.achieved_rate:,.0f} readings/s (target {summary.rate_requested:,.0f})  "
        f"faulty {faulty:,}  acked {summary.acked:,}"
    )


def summary_table(summary: Summary) -> Table:
    data = summary.to_json()
    table = Table(title=f"simulation {summary.run_id}: {summary.devices} devices, {summary.format}")
    table.add_column("what")
    table.add_column("messages", justify="right")
    table.add_column("readings", justify="right")
    table.add_row("sent", f"{summary.messages:,}", f"{summary.readings:,}")
    for kind, counted in data["kinds"].items():
        table.add_row(f"  {kind}", f"{counted['messages']:,}", f"{counted['readings']:,}")
    table.add_row("valid (to store)", "", f"{summary.valid:,}")
    for reason, values in data["rejected"].items():
        table.add_row(
            f"  rejected: {reason}", f"{data['rejected_messages'][reason]:,}", f"{values:,}"
        )
    table.add_row(
        "acked / refused / unacked",
        f"{summary.acked:,} / {summary.refused:,} / {summary.unacked:,}",
        "",
    )
    table.add_row(
        "rate",
        f"{summary.message_rate:,.0f}/s",
        f"{summary.achieved_rate:,.0f}/s of {summary.rate_requested:,.0f}/s",
    )
    table.add_row("duration / bytes", f"{summary.duration_s:.2f} s", f"{summary.bytes:,} B")
    if summary.silent_devices:
        table.add_row("silent devices", ", ".join(summary.silent_devices), "")
    return table
