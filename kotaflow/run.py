"""``kotaflow run``: the whole pipeline with simulated devices on the local stack.

Each part runs as its own ``kotaflow <part>`` process, exactly as in production, so a
crash of one is visible and the others keep going. Every part gets a Prometheus endpoint
(a free local port each), and the live view reads what the parts already expose: their
Prometheus figures (messages in, readings validated and stored, dead letters by reason,
consumer lag, InfluxDB writes), the topics' end offsets, the alert stage's state file
(firing alerts, read-only) and the tail of the alerts topic (latest notifications).

Each part's output goes to ``<state>/pipeline/<part>.log``, rotated by size
(:data:`LOG_MAX_BYTES`, :data:`LOG_BACKUPS`).

Part of the CLI's roof, not of the foundation: it composes every part and reads their
figures with ``processors.status`` (imported inside the functions that scrape). Only
:mod:`kotaflow.cli` imports it; no foundation module may (``tests/kotaflow/test_foundation.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import FrameType
from typing import IO, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from kotaflow.kafka import client_options
from kotaflow.processes import stop_gracefully
from kotaflow.settings import Settings

LOG_MAX_BYTES = 20 * 1024 * 1024
LOG_BACKUPS = 3
NOTIFICATIONS_SHOWN = 5
STARTUP_S = 20.0
"""A part whose metrics endpoint has not answered by then is shown running without one."""
console = Console(highlight=False)


@dataclass
class Part:
    """One pipeline process: the ``kotaflow`` sub-command and its arguments."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    metrics_port: int | None = None
    """Its Prometheus endpoint on 127.0.0.1 (None: it has none)."""
    env: dict[str, str] = field(default_factory=dict)
    """Settings for it alone (``KOTAFLOW_*``), e.g. its metrics port."""
    url: str | None = None
    """Where people open it (the public pages), printed at start."""
    started_at: float = 0.0
    up: bool = False
    """Its metrics endpoint has answered (it finished starting)."""
    pump: threading.Thread | None = None


@dataclass
class TopicRates:
    last: dict[str, float] = field(default_factory=dict)
    last_at: float = 0.0

    def update(self, totals: dict[str, float]) -> dict[str, float]:
        """Per-second rates since the previous call (0 at the first)."""
        now = time.monotonic()
        span = now - self.last_at if self.last_at else 0.0
        rates = {k: (v - self.last.get(k, v)) / span if span else 0.0 for k, v in totals.items()}
        self.last, self.last_at = dict(totals), now
        return rates


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pipeline_parts(available: set[str], rate: float, faults: str) -> list[Part]:
    """The processes to start, in data-flow order, limited to the parts that exist; each
    with its own free Prometheus port."""
    bridge_port, process_port, alert_port = free_port(), free_port(), free_port()
    public_port = free_port()
    wanted = [
        Part(
            "bridge",
            ["bridge"],
            metrics_port=bridge_port,
            env={"KOTAFLOW_BRIDGE__METRICS_PORT": str(bridge_port)},
        ),
        Part(
            "process",
            ["process"],
            metrics_port=process_port,
            env={"KOTAFLOW_METRICS_PORT": str(process_port)},
        ),
        Part(
            "alert",
            ["alert"],
            metrics_port=alert_port,
            env={"KOTAFLOW_METRICS_PORT": str(alert_port)},
        ),
        Part("simulate", ["simulate", "--rate", f"{rate:g}", "--faults", faults]),
        Part(
            "public",
            ["public", "--port", str(public_port)],
            url=f"http://127.0.0.1:{public_port}/",
        ),
    ]
    return [part for part in wanted if part.argv[0] in available]


def start(part: Part, config: Path | None, log_dir: Path) -> None:
    """Start the part's process; its output is copied to its size-rotated log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    part.log = log_dir / f"{part.name}.log"
    argv = [sys.executable, "-m", "kotaflow"]
    if config is not None:
        argv += ["--config", str(config)]
    part.proc = subprocess.Popen(
        argv + part.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **part.env},
    )
    part.started_at = time.monotonic()
    assert part.proc.stdout is not None
    part.pump = threading.Thread(
        target=copy_to_log, args=(part.proc.stdout, part.log), daemon=True, name=part.name
    )
    part.pump.start()


def copy_to_log(stream: IO[bytes], path: Path) -> None:
    """Every line of ``stream`` into ``path``, rotated at :data:`LOG_MAX_BYTES`."""
    handler = RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            handler.emit(logging.makeLogRecord({"msg": line, "args": None}))
    finally:
        handler.close()


def stop(parts: list[Part], timeout: float = 20.0) -> None:
    """SIGTERM in reverse data-flow order (sources first), so in-flight work drains;
    says what it is doing, part by part."""
    running = [p for p in reversed(parts) if p.proc is not None and p.proc.poll() is None]
    if running:
        names = ", ".join(p.name for p in running)
        console.print(f"stopping {names} (each drains and commits first) ...")
    for part in reversed(parts):
        if part.proc is None:
            continue
        began = time.monotonic()
        stop_gracefully(part.proc, timeout)
        if part.pump is not None:
            part.pump.join(5)
        code = part.proc.returncode
        took = time.monotonic() - began
        console.print(f"  {part.name}: stopped (exit {code}) in {took:.1f}s")
    console.print("pipeline stopped")


async def topic_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (a plain consumer only knows the topics it subscribed)."""
    described = await admin.describe_topics(topics)
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        for p in t.get("partitions", [])
    ]


async def topic_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[str, int]:
    ends = await consumer.end_offsets(partitions) if partitions else {}
    totals: dict[str, int] = {}
    for tp, end in ends.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + end
    return totals


@dataclass
class Figures:
    """What one refresh of the live view shows."""

    totals: dict[str, float] = field(default_factory=dict)
    """Cumulative counters (topic end offsets and Prometheus totals) by name."""
    rates: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    deadletters: dict[str, float] = field(default_factory=dict)
    """``stage/reason`` -> count since the parts started."""
    firing: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)


def summed(samples: dict[str, float] | None, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    from processors.status import samples_named

    return sum(
        value
        for found, value in samples_named(samples, name)
        if all(found.get(k) == v for k, v in labels.items())
    )


def labelled(samples: dict[str, float] | None, name: str, *keys: str) -> dict[str, float]:
    """``name``'s samples summed by the values of ``keys`` (joined by ``/``)."""
    from processors.status import samples_named

    out: dict[str, float] = {}
    for found, value in samples_named(samples, name):
        label = "/".join(found.get(k, "?") for k in keys)
        out[label] = out.get(label, 0.0) + value
    return out


def figures_of(scraped: dict[str, dict[str, float] | None]) -> Figures:
    """The live view's counters from each part's Prometheus samples."""
    bridge, process = scraped.get("bridge"), scraped.get("process")
    totals = {
        "messages received (bridge)": summed(bridge, "kotaflow_bridge_received_total"),
        "readings validated": summed(process, "kotaflow_records_out_total", stage="validate"),
        "points stored": summed(process, "kotaflow_records_out_total", stage="store"),
        "rollups written": summed(process, "kotaflow_records_out_total", stage="aggregate"),
        "InfluxDB writes": summed(process, "kotaflow_write_seconds_count", stage="store")
        + summed(process, "kotaflow_write_seconds_count", stage="aggregate"),
    }
    alert = scraped.get("alert")
    totals["alert events"] = summed(alert, "kotaflow_alert_events_total")
    totals["notifications"] = summed(alert, "kotaflow_alert_notifications_total")
    deadletters = {
        f"bridge/{reason}": n
        for reason, n in labelled(bridge, "kotaflow_bridge_deadlettered_total", "reason").items()
        if n
    }
    deadletters.update(
        (k, n)
        for k, n in labelled(process, "kotaflow_deadletter_total", "stage", "reason").items()
        if n
    )
    deadletters.update(
        (k, n)
        for k, n in labelled(alert, "kotaflow_deadletter_total", "stage", "reason").items()
        if n
    )
    lag = labelled(process, "kotaflow_consumer_lag", "stage")
    lag.update(labelled(alert, "kotaflow_consumer_lag", "stage"))
    return Figures(totals=totals, lag=lag, deadletters=deadletters)


def render(parts: list[Part], figures: Figures) -> Group:
    procs = Table(title="kotaflow pipeline")
    for column in ("part", "state", "metrics", "log"):
        procs.add_column(column)
    for part in parts:
        code = part.proc.poll() if part.proc else None
        if code is not None:
            state = f"[red]exited {code}[/red]"
        elif part.up or part.metrics_port is None:
            state = "[green]running[/green]"
        elif time.monotonic() - part.started_at > STARTUP_S:
            state = "[green]running[/green] [yellow](no metrics endpoint)[/yellow]"
        else:
            state = f"[yellow]starting ({time.monotonic() - part.started_at:.0f}s)[/yellow]"
        port = f"127.0.0.1:{part.metrics_port}" if part.metrics_port else ""
        procs.add_row(part.name, state, port, str(part.log))
    flow = Table(title="flow (since start) and rate now")
    for column in ("what", "total", "per second"):
        flow.add_column(column)
    for name, total in figures.totals.items():
        flow.add_row(name, f"{total:,.0f}", f"{figures.rates.get(name, 0.0):,.0f}")
    side = Table(title="dead letters, lag, alerts")
    side.add_column("what")
    side.add_column("value", overflow="fold")
    for name, n in sorted(figures.deadletters.items()):
        side.add_row(f"dead letters {name}", f"{n:,.0f}")
    if not figures.deadletters:
        side.add_row("dead letters", "none")
    for stage, behind in sorted(figures.lag.items()):
        side.add_row(f"lag {stage}", f"{behind:,.0f}")
    firing = ", ".join(f"{a['rule']}@{a['device']} ({a['level']})" for a in figures.firing)
    side.add_row("firing alerts", firing or "none")
    for text in figures.notifications:
        side.add_row("notification", text)
    return Group(procs, flow, side)


def notification_text(raw: bytes | None) -> str:
    """One line for an alert event on the alerts topic."""
    try:
        event = json.loads(raw or b"")
    except ValueError:
        return "(unreadable event)"
    if not isinstance(event, dict):
        return "(unreadable event)"
    when = time.strftime("%H:%M:%S", time.gmtime(int(event.get("at_ms", 0)) / 1000))
    value = event.get("value")
    shown = f"{value:g}" if isinstance(value, int | float) else ""
    return (
        f"{when} UTC {event.get('change', '?')} {event.get('rule', '?')}@"
        f"{event.get('device', '?')} {event.get('level', '')} {shown}".rstrip()
    )


async def latest_notifications(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], n: int
) -> list[str]:
    """The last ``n`` alert events (by time) across the alerts topic's partitions."""
    if not partitions:
        return []
    ends = await consumer.end_offsets(partitions)
    found = []
    for tp in partitions:
        if ends[tp] == 0:
            continue
        consumer.seek(tp, max(ends[tp] - n, 0))
        deadline = time.monotonic() + 2.0
        while await consumer.position(tp) < ends[tp] and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=n)
            found += batch.get(tp, [])
    found.sort(key=lambda r: r.timestamp)
    return [notification_text(r.value) for r in found[-n:]]


def records_since(first: dict[str, int], now: dict[str, int], topics: list[str]) -> dict[str, int]:
    """Records written to each topic since the view started (its end offsets then and
    now): the flow table is "since start", and a shared topic's end offset is not."""
    return {f"records on {topic}": now.get(topic, 0) - first.get(topic, 0) for topic in topics}


async def watch(settings: Settings, parts: list[Part], duration: float | None) -> None:
    from processors.status import firing_alerts, scrape

    t = settings.kafka.topics
    topics = [t.raw, t.readings, t.deadletter, t.alerts]
    options = client_options(settings)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        partitions = await topic_partitions(admin, topics)
    finally:
        await admin.close()
    alert_partitions = [tp for tp in partitions if tp.topic == t.alerts]
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await consumer.start()
    if alert_partitions:
        consumer.assign(alert_partitions)
    try:
        state = TopicRates()
        first: dict[str, int] = {}
        deadline = None if duration is None else time.monotonic() + duration
        with Live(render(parts, Figures()), refresh_per_second=2, console=console) as live:
            tick = 0
            notifications: list[str] = []
            while deadline is None or time.monotonic() < deadline:
                scraped = {}
                for part in parts:
                    if part.metrics_port:
                        scraped[part.name] = await scrape(part.metrics_port)
                        part.up = part.up or scraped[part.name] is not None
                figures = figures_of(scraped)
                found = await topic_offsets(consumer, partitions)
                first = first or found
                figures.totals.update(records_since(first, found, topics))
                figures.rates = state.update(figures.totals)
                if tick % 5 == 0:  # every few seconds is enough for the slower sources
                    notifications = await latest_notifications(
                        consumer, alert_partitions, NOTIFICATIONS_SHOWN
                    )
                figures.firing = firing_alerts(settings)
                figures.notifications = notifications
                live.update(render(parts, figures))
                tick += 1
                await asyncio.sleep(1.0)
    finally:
        await consumer.stop()


def run_pipeline(
    settings: Settings,
    available: set[str],
    config: Path | None,
    rate: float,
    faults: str,
    duration: float | None,
) -> None:
    parts = pipeline_parts(available, rate, faults)
    log_dir = settings.stack.state_dir / "pipeline"
    with contextlib.suppress(KeyboardInterrupt), interrupted_by_sigterm():
        try:
            for part in parts:
                start(part, config, log_dir)
                assert part.proc is not None
                where = f", metrics 127.0.0.1:{part.metrics_port}" if part.metrics_port else ""
                where += f", open {part.url}" if part.url else ""
                console.print(f"started {part.name} (pid {part.proc.pid}{where}, log {part.log})")
            asyncio.run(watch(settings, parts, duration))
        finally:
            stop(parts)


@contextlib.contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, systemd) stops the pipeline as Ctrl-C does: without
    this, the parts outlive ``kotaflow run`` and keep consuming. One SIGTERM is enough; a
    second one while the parts drain is ignored (the parts still get theirs)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
