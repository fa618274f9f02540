"""Alert latency: from the MQTT publish that crosses a threshold to the notification received.

Runs the isolated pipeline of :mod:`processors.alerting.e2e` on the running local stack
(``kotaflow stack up`` first): ``kotaflow bridge``, ``kotaflow process --stage validate`` and
``kotaflow alert`` as processes, a webhook receiver on loopback. A simulated river gauge then
alternates 262 cm (crosses Siaga at 250: a "fired" notification) and 230 cm (below the clear
value 240: "resolved"), one publish at a time, each waiting for its notification. Every
sample is publish time -> the receiver's arrival time, both on this machine's clock.

Usage: uv run python benchmarks/alert_bench.py [--samples 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from aiohttp import web

from processors.alerting.e2e import pipeline


async def main(samples: int) -> int:
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
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        with pipeline(Path(tmp), f"http://127.0.0.1:{port}/hook") as run:
            print(f"pipeline ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
            for i in range(samples):
                sent = run.publish(262.0 if i % 2 == 0 else 230.0)
                deadline = time.monotonic() + 60
                while len(arrivals) <= i:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"notification {i + 1} did not arrive within 60 s")
                    await asyncio.sleep(0.001)
                latencies.append((arrivals[i][0] - sent) * 1000)
            upstream, outbox = _split(
                run.settings.alerting.state_path(run.settings.stack.state_dir)
            )
    await runner.cleanup()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    changes = [body["event"]["change"] for _, body in arrivals]  # type: ignore[index]
    print(f"samples: {len(latencies)} ({changes.count('fired')} fired, "
          f"{changes.count('resolved')} resolved)")  # fmt: skip
    print(f"publish -> notification: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
          f"min {latencies[0]:.0f} ms, max {latencies[-1]:.0f} ms")  # fmt: skip
    print(f"  of which publish -> evaluated and queued (bridge, validate, evaluator): "
          f"p50 {statistics.median(upstream):.0f} ms; queued -> delivered (outbox, webhook): "
          f"p50 {statistics.median(outbox):.0f} ms, max {max(outbox):.0f} ms")  # fmt: skip
    return 0


def _split(state_file: Path) -> tuple[list[float], list[float]]:
    """Per notification: device time -> queued in the outbox, and queued -> delivered."""
    with closing(sqlite3.connect(state_file)) as db:
        rows = db.execute(
            "SELECT payload, created_ms, done_ms FROM outbox WHERE destination = 'hook'"
            " AND status = 'sent'"
        ).fetchall()
    upstream = [created - json.loads(payload)["at_ms"] for payload, created, _ in rows]
    return upstream, [done - created for _, created, done in rows]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    sys.exit(asyncio.run(main(parser.parse_args().samples)))
