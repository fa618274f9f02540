"""Load on ``kotaflow public`` from loopback: requests/s, p99, and InfluxDB queries meanwhile.

Runs the service in this process (reading the local stack's buckets with the read-only
token, so nothing is written) with the rate limit lifted, and ``wrk`` (Debian's package)
against the regency page with gzip for a bounded time. The point: however many requests,
InfluxDB sees only the scheduled refreshes (two queries each).

Example: kotaflow bench public   (or: uv run python -m benchmarks.public_bench --seconds 10)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import time
from dataclasses import dataclass

from benchmarks.report import Figure, ScenarioResult
from kotaflow.settings import Settings, load_settings
from processors.public.refresh import InfluxReader
from processors.public.service import PublicOptions, running


def _p99_ms(report: str) -> float | None:
    found = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", report, re.MULTILINE)
    if found is None:
        return None
    return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]


@dataclass(frozen=True, slots=True)
class LoadRun:
    path: str
    seconds: int
    connections: int
    requests_per_s: float
    p99_ms: float | None
    queries: int
    interval_s: float
    elapsed_s: float
    report: str

    def line(self) -> str:
        return (
            f"public bench: {self.path} {self.seconds}s, {self.connections} connections: "
            f"{self.requests_per_s:.0f} requests/s, p99 {self.p99_ms} ms, "
            f"InfluxDB queries during the run: {self.queries} "
            f"(refresh every {self.interval_s:g} s over {self.elapsed_s:.1f} s)"
        )


async def measure(
    settings: Settings, seconds: int, connections: int, path: str, interval_s: float
) -> LoadRun:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    options = PublicOptions(port=0, interval_s=interval_s, rate_per_s=1e9, burst=1e9)
    async with running(settings, options) as (url, keeper):
        reader = keeper.reader
        assert isinstance(reader, InfluxReader)
        before, started = reader.queries, time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            wrk,
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "5s",
            "-H",
            "Accept-Encoding: gzip",
            f"{url}{path}",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
        elapsed = time.monotonic() - started
        queries = reader.queries - before
    report = out.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", report)
    return LoadRun(
        path,
        seconds,
        connections,
        float(rate[1]) if rate else float("nan"),
        _p99_ms(report),
        queries,
        interval_s,
        elapsed,
        report,
    )


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``public`` scenario of ``kotaflow bench``: 5 s (quick) or 10 s of wrk on ``/``."""
    seconds, interval = (5, 5.0) if quick else (10, 5.0)
    run = await measure(settings, seconds, 50, "/", interval)
    return ScenarioResult(
        "public",
        quick,
        {"path": "/ (gzip)", "seconds": seconds, "connections": 50, "refresh_s": interval},
        throughput=[Figure("regency page", run.requests_per_s, "requests/s")],
        notes=[
            f"p99 {run.p99_ms} ms (wrk --latency)",
            f"InfluxDB queries during the run: {run.queries} "
            f"(3 per refresh, every {interval:g} s, whatever the traffic)",
        ],
    )


async def bench(seconds: int, connections: int, path: str, interval_s: float) -> None:
    run = await measure(load_settings(), seconds, connections, path, interval_s)
    print(run.report)
    print(run.line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--path", default="/")
    parser.add_argument("--interval", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(bench(args.seconds, args.connections, args.path, args.interval))


if __name__ == "__main__":
    main()
