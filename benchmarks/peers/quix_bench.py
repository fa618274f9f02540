"""The Quix Streams peer on its own, beside kotaflow's ``process`` on the same backlog: for
working on the peer (``kotaflow bench peers`` is the comparison users run).

Fills a private raw topic with the ``process`` scenario's native-JSON backlog
(:func:`benchmarks.processors_throughput.backlog`), drains it with the Quix app
(:func:`benchmarks.peers.quix_peer.run_quix_backlog`) into scratch buckets, counts raw points
and complete event-time 1-minute windows there, then (unless ``--no-kotaflow``) drains the
same backlog with kotaflow (validate, then store + aggregate, each a fresh process, as the
``process`` scenario does) and prints one JSON line::

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


async def measure(count: int, with_kotaflow: bool) -> dict[str, Any]:
    async with prepared_backlog(count) as prepared:
        mine, job = prepared.settings, prepared.job
        quix = await run_quix_backlog(job)
        figures: dict[str, Any] = {
            "messages": count,
            "readings": job.readings,
            "quix": {**_run_figures(quix), **await landed(mine, prepared.expected)},
            "quix_notes": list(quix.notes),
        }
        if with_kotaflow:
            figures["kotaflow"] = await _kotaflow(
                prepared.tag, mine, count, job.readings, prepared.expected
            )
    figures["load_avg_1m"] = os.getloadavg()[0]
    return figures


async def _kotaflow(
    tag: str, settings: Settings, count: int, readings: int, expected: Counter[WindowKey]
) -> dict[str, Any]:
    """kotaflow's ``process`` scenario on the same backlog, into buckets of its own."""
    async with scratch_buckets(settings, tag, prefix="benchk") as mine:
        validate = await asyncio.to_thread(drain_in_child, mine, [StageName.VALIDATE], count)
        write = await asyncio.to_thread(
            drain_in_child, mine, [StageName.STORE, StageName.AGGREGATE], count
        )
        v, w = validate.timing, write.timing
        cpu_s = v.steady_cpu_s / v.steady_share + w.steady_cpu_s / w.steady_share
        wall_s = v.steady_s / v.steady_share + w.steady_s / w.steady_share
        return {
            "validate_readings_per_s": round(v.rate(readings)),
            "store_aggregate_readings_per_s": round(w.rate(readings)),
            "readings_per_s_both_steps": round(readings / wall_s),
            "cpu_us_per_reading": round(1e6 * cpu_s / readings, 1),
            "peak_rss_mb": round(validate.cost.peak_rss_mb + write.cost.peak_rss_mb, 1),
            **await landed(mine, expected),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--no-kotaflow", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.messages, not args.no_kotaflow))))


if __name__ == "__main__":
    main()
