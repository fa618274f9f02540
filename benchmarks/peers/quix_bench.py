"""The Quix Streams peer on its own, beside kotaflow's ``process`` on the same backlog: for
working on the peer (``kotaflow bench peers`` is the comparison users run).

Fills a private raw topic with the ``process`` scenario's native-JSON backlog
(:func:`benchmarks.processors_throughput.backlog`), drains it with the Quix app
(:func:`benchmarks.peers.quix_peer.run_quix_backlog`) into scratch buckets, counts raw points
and complete event-time 1-minute windows there, then (unless ``--no-kotaflow``) drains the
same backlog with ``kotaflow process`` (every stage in one fresh process) and prints one
JSON line::

    uv run python -m benchmarks.peers.quix_bench --messages 40000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.isolation import scratch_buckets
from benchmarks.peers.common import BacklogJob, InfluxTarget, PeerRun
from benchmarks.peers.quix_logic import minute_of
from benchmarks.peers.quix_peer import run_quix_backlog
from benchmarks.processors_throughput import PARTITIONS, backlog, cleanup, drain_in_child, fill
from kotaflow.settings import Settings, load_settings
from kotaflow.wire.raw import RawEnvelope
from processors.runner import StageName
from tests.support.isolated_kafka import isolated

WindowKey = tuple[str, str, int]
"""(device, metric, window start ms)."""


def expected_windows(envelopes: list[RawEnvelope]) -> Counter[WindowKey]:
    """Readings per (device, metric, minute) in the backlog."""
    out: Counter[WindowKey] = Counter()
    for e in envelopes:
        body = json.loads(e.payload)
        start = minute_of(body["ts"])
        for metric in body["values"]:
            out[(e.device_key, metric, start)] += 1
    return out


async def flux_rows(settings: Settings, flux: str) -> list[dict[str, str]]:
    influx = settings.influxdb
    token = influx.token.get_secret_value() if influx.token else ""
    headers = {"Authorization": f"Token {token}", "Accept": "application/csv"}
    async with httpx.AsyncClient(base_url=influx.url, headers=headers, timeout=120.0) as http:
        answer = await http.post("/api/v2/query", params={"org": influx.org}, json={"query": flux})
        answer.raise_for_status()
    return [row for row in csv.DictReader(io.StringIO(answer.text)) if row.get("_value")]


async def landed(settings: Settings, expected: Counter[WindowKey]) -> dict[str, int]:
    """Raw readings stored, and windows whose rollup counts every reading of its minute."""
    b = settings.influxdb
    raw = await flux_rows(
        settings,
        f'from(bucket: "{b.telemetry_bucket}") |> range(start: 0) |> count() |> group() |> sum()',
    )
    counts = await flux_rows(
        settings,
        f'from(bucket: "{b.rollups_bucket}") |> range(start: 0)'
        ' |> filter(fn: (r) => r.window == "1m" and r._field == "count")',
    )
    found = {(r["device"], r["metric"], _ms(r["_time"])): int(r["_value"]) for r in counts}
    complete = sum(1 for key, n in expected.items() if found.get(key) == n)
    return {
        "raw_readings": sum(int(r["_value"]) for r in raw),
        "windows_expected": len(expected),
        "windows_written": len(found),
        "windows_complete": complete,
    }


def _ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _run_figures(run: PeerRun) -> dict[str, Any]:
    return {
        "readings_per_s": round(run.rate),
        "cpu_us_per_reading": round(run.cpu_us_per_item, 1),
        "steady_s": round(run.steady_s, 2),
        "total_s": round(run.total_s, 2),
        "startup_s": None if run.startup_s is None else round(run.startup_s, 2),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
    }


@dataclass(frozen=True, slots=True)
class PreparedBacklog:
    tag: str
    settings: Settings
    """Isolated topics and scratch buckets holding the backlog (and the peer's points)."""
    job: BacklogJob
    expected: Counter[WindowKey]


@contextlib.asynccontextmanager
async def prepared_backlog(count: int) -> AsyncIterator[PreparedBacklog]:
    """``count`` messages of the ``process`` backlog in a fresh raw topic, with scratch
    buckets and a work folder for the peer; all removed on exit."""
    tag = uuid.uuid4().hex[:8]
    base = isolated(load_settings(), tag, prefix="bench")
    work = Path(tempfile.mkdtemp(prefix=f"quix-{tag}-"))
    async with scratch_buckets(base, tag) as mine:
        envelopes, readings = backlog(mine, count)
        expected = expected_windows(envelopes)
        try:
            await fill(mine, envelopes)
            del envelopes
            influx = mine.influxdb
            job = BacklogJob(
                bootstrap_servers=mine.kafka.bootstrap_servers,
                topic=mine.kafka.topics.raw,
                partitions=PARTITIONS,
                group=f"bench-{tag}-quix",
                messages=count,
                readings=readings,
                influx=InfluxTarget(
                    influx.url,
                    influx.org,
                    influx.token.get_secret_value() if influx.token else "",
                    influx.telemetry_bucket,
                    influx.rollups_bucket,
                ),
                work_dir=work,
            )
            yield PreparedBacklog(tag, mine, job, expected)
        finally:
            await cleanup(mine)
            shutil.rmtree(work, ignore_errors=True)


async def measure(count: int, with_kotaflow: bool, kotaflow_first: bool) -> dict[str, Any]:
    """One round on one backlog: the Quix app and (unless not wanted) kotaflow, in the
    order asked (rounds alternate it, so neither always gets the fresher machine)."""
    async with prepared_backlog(count) as prepared:
        mine, job = prepared.settings, prepared.job
        figures: dict[str, Any] = {"messages": count, "readings": job.readings}
        if with_kotaflow and kotaflow_first:
            figures["kotaflow"] = await _kotaflow(prepared, mine)
        quix = await run_quix_backlog(job)
        figures["quix"] = {**_run_figures(quix), **await landed(mine, prepared.expected)}
        if with_kotaflow and not kotaflow_first:
            figures["kotaflow"] = await _kotaflow(prepared, mine)
        figures["quix_notes"] = list(quix.notes)
    if with_kotaflow:
        k, q = figures["kotaflow"], figures["quix"]
        figures["kotaflow_vs_quix"] = {
            "readings_per_s": round(k["readings_per_s"] / max(1, q["readings_per_s"]), 2),
            "cpu_per_reading": round(k["cpu_us_per_reading"] / q["cpu_us_per_reading"], 2),
        }
    figures["load_avg_1m"] = os.getloadavg()[0]
    return figures


async def _kotaflow(prepared: PreparedBacklog, settings: Settings) -> dict[str, Any]:
    """``kotaflow process`` (validate, store and aggregate in one fresh process) on the same
    backlog, into buckets of its own; rates from its first record on."""
    stages = [StageName.VALIDATE, StageName.STORE, StageName.AGGREGATE]
    job = prepared.job
    readings = job.readings
    async with scratch_buckets(settings, prepared.tag, prefix="benchk") as mine:
        run = await asyncio.to_thread(drain_in_child, mine, stages, job.messages)
        t = run.timing
        return {
            "readings_per_s": round(t.rate(readings)),
            "cpu_us_per_reading": round(1e6 / t.per_cpu_s(readings), 1),
            "steady_s": round(t.steady_s, 2),
            "total_s": round(t.elapsed_s, 2),
            "peak_rss_mb": round(run.cost.peak_rss_mb, 1),
            **await landed(mine, prepared.expected),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved, one line each")
    parser.add_argument("--no-kotaflow", action="store_true")
    args = parser.parse_args()
    for i in range(args.rounds):
        figures = asyncio.run(measure(args.messages, not args.no_kotaflow, i % 2 == 1))
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
