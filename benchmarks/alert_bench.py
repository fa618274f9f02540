"""Alert latency: from the MQTT publish that crosses a threshold to the notification received.

Runs the isolated pipeline of :mod:`tests.support.alerting_pipeline` on the running local stack
(``kotaflow stack up`` first): ``kotaflow bridge``, ``kotaflow process --stage validate`` and
``kotaflow alert`` as processes, a webhook receiver on loopback. A simulated river gauge then
alternates 262 cm (crosses Siaga at 250: a "fired" notification) and 230 cm (below the clear
value 240: "resolved"), one publish at a time, each waiting for its notification. Every
sample is publish time -> the receiver's arrival time, both on this machine's clock.

Routing and grouping are on (:data:`ROUTED`): two matching routes (``continue``), the Siaga
route with a :data:`GROUP_WINDOW_S` group window, so a *fired* notification waits out the
window by design (it collects a storm into one message) and a *resolved* one goes at once;
the two are reported apart. ``--plain`` runs without routes or grouping, for comparison.

Usage: ``uv run python -m benchmarks.alert_bench [--samples 60] [--plain]``, or the
``alert`` scenario of ``kotaflow bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks.procstats import ProcessCost, cost_of
from benchmarks.report import Latency, ScenarioResult
from kotaflow.settings import Settings
from tests.support.alerting_pipeline import pipeline

QUICK_SAMPLES, FULL_SAMPLES = 10, 60
GROUP_WINDOW_S = 2
ROUTED: dict[str, Any] = {
    "routes": [
        {
            "name": "siaga",
            "match": {"labels": {"team": "bpbd"}, "level": ["Siaga"]},
            "receivers": ["hook"],
            "group_window": f"{GROUP_WINDOW_S}s",
            "escalate_after": "15m",
            "escalate_to": ["hook"],
            "continue": True,
        },
        {"name": "bpbd", "match": {"labels": {"team": "bpbd"}}, "receivers": ["hook"]},
    ],
    "default_route": {"receivers": [], "group_window": 0},
}


@dataclass(frozen=True, slots=True)
class AlertRun:
    latencies_ms: list[float]
    """Publish -> webhook received, per notification, in order."""
    changes: list[str]
    """``fired`` / ``resolved`` of each notification."""
    upstream_ms: list[float]
    """Device time -> queued in the outbox (bridge, validate, evaluator)."""
    outbox_ms: list[float]
    """Queued -> delivered (outbox, webhook)."""
    processes: list[ProcessCost]
    ready_s: float


async def measure(samples: int, alerting: Mapping[str, Any] | None = ROUTED) -> AlertRun:
    arrivals: list[tuple[float, dict[str, object]]] = []

    async def receive(request: web.Request) -> web.Response:
        arrivals.append((time.time(), await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    latencies: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            hook = f"http://127.0.0.1:{port}/hook"
            with pipeline(Path(tmp), hook, alerting=alerting) as run:
                ready_s = time.monotonic() - started
                print(f"pipeline ready in {ready_s:.1f}s", file=sys.stderr)
                for i in range(samples):
                    sent = run.publish(262.0 if i % 2 == 0 else 230.0)
                    deadline = time.monotonic() + 60
                    while len(arrivals) <= i:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"notification {i + 1} did not arrive within 60 s")
                        await asyncio.sleep(0.001)
                    latencies.append((arrivals[i][0] - sent) * 1000)
                costs = [cost_of(_name(proc), proc.pid) for proc in run.procs]
                upstream, outbox = _split(
                    run.settings.alerting.state_path(run.settings.stack.state_dir)
                )
    finally:
        await runner.cleanup()
    changes = [str(body["event"]["change"]) for _, body in arrivals]  # type: ignore[index]
    return AlertRun(latencies, changes, upstream, outbox, costs, ready_s)


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``alert`` scenario of ``kotaflow bench`` (the pipeline reads its own settings)."""
    samples = QUICK_SAMPLES if quick else FULL_SAMPLES
    run = await measure(samples)
    return ScenarioResult(
        "alert",
        quick,
        {
            "samples": samples,
            "rule": "threshold, river level Siaga at 250 cm",
            "routing": f"2 routes (continue), fired grouped in a {GROUP_WINDOW_S} s window",
        },
        latency=Latency.of("MQTT publish -> webhook received", run.latencies_ms),
        processes=run.processes,
        notes=[
            f"{run.changes.count('fired')} fired, {run.changes.count('resolved')} resolved; "
            f"pipeline ready in {run.ready_s:.0f} s (CPU figures include start-up)",
            *_by_change(run),
            f"publish -> queued in the outbox p50 {statistics.median(run.upstream_ms):.0f} ms; "
            f"queued -> delivered p50 {statistics.median(run.outbox_ms):.0f} ms",
        ],
    )


def _name(proc: subprocess.Popen[bytes]) -> str:
    """``kotaflow alert`` for ``[python, -m, kotaflow, alert]``."""
    args = proc.args if isinstance(proc.args, list) else []
    return "kotaflow " + " ".join(str(a) for a in args[3:])


def _split(state_file: Path) -> tuple[list[float], list[float]]:
    """Per notification: device time -> queued in the outbox, and queued -> delivered."""
    with closing(sqlite3.connect(state_file)) as db:
        rows = db.execute(
            "SELECT payload, created_ms, done_ms FROM outbox WHERE destination = 'hook'"
            " AND status = 'sent'"
        ).fetchall()
    upstream = [created - json.loads(payload)["at_ms"] for payload, created, _ in rows]
    return upstream, [done - created for _, created, done in rows]


def _by_change(run: AlertRun) -> list[str]:
    """p50/p99 of fired (grouped: includes the window) and resolved (sent at once) apart."""
    lines = []
    for change in ("fired", "resolved"):
        found = [ms for ms, c in zip(run.latencies_ms, run.changes, strict=True) if c == change]
        lat = Latency.of(change, found)
        if lat is not None:
            lines.append(f"{change}: p50 {lat.p50_ms:.0f} ms, p99 {lat.p99_ms:.0f} ms")
    return lines


def main(samples: int, plain: bool) -> int:
    run = asyncio.run(measure(samples, None if plain else ROUTED))
    print("routing and grouping " + ("off" if plain else f"on ({GROUP_WINDOW_S} s window)"))
    for text in _by_change(run):
        print(f"  {text}")
    lat = Latency.of("publish -> notification", run.latencies_ms)
    assert lat is not None
    print(f"samples: {lat.samples} ({run.changes.count('fired')} fired, "
          f"{run.changes.count('resolved')} resolved)")  # fmt: skip
    print(f"publish -> notification: p50 {lat.p50_ms:.0f} ms, p95 {lat.p95_ms:.0f} ms, "
          f"p99 {lat.p99_ms:.0f} ms, min {min(run.latencies_ms):.0f} ms, "
          f"max {lat.max_ms:.0f} ms")  # fmt: skip
    print(f"  of which publish -> evaluated and queued (bridge, validate, evaluator): "
          f"p50 {statistics.median(run.upstream_ms):.0f} ms; queued -> delivered (outbox, "
          f"webhook): p50 {statistics.median(run.outbox_ms):.0f} ms, "
          f"max {max(run.outbox_ms):.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=FULL_SAMPLES)
    parser.add_argument("--plain", action="store_true", help="no routes, no grouping")
    args = parser.parse_args()
    sys.exit(main(args.samples, args.plain))
