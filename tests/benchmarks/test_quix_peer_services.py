"""The Quix Streams peer on the real stack: its venv installs (cached after the first time,
~5 s from a warm uv cache), and the app drains a small backlog into scratch buckets, every
reading stored and every window it closed complete, skipping a record that is not JSON and
one of an unknown device, committing all of it, and leaves no topic of its own behind.
About 10-20 s once the venv is cached."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.peers.common import PeerNotRunError
from benchmarks.peers.quix_bench import landed, prepared_backlog
from benchmarks.peers.quix_peer import run_quix_backlog
from tests.support.isolated_kafka import produce_all

pytestmark = pytest.mark.services

MESSAGES = 6000
"""40 devices x 150 s: two closed minutes per device at least, the last one open."""


async def _topics_of(bootstrap: str, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if f"__{group}--" in t]
    finally:
        await admin.close()


def test_quix_app_drains_a_backlog_at_least_once_into_both_buckets() -> None:
    async def scenario() -> tuple[dict[str, int], int, list[str], float | None, str]:
        async with prepared_backlog(MESSAGES) as prepared:
            stranger = json.dumps({"ts": 1, "values": {"x": 1}}).encode()
            bad = [(b"d-01", b"{not json", []), (b"nobody", stranger, [])]
            await produce_all(prepared.settings, prepared.job.topic, bad)
            job = dataclasses.replace(prepared.job, messages=MESSAGES + len(bad))
            try:
                run = await run_quix_backlog(job)
            except PeerNotRunError as err:  # e.g. no PyPI to install it from
                pytest.skip(f"Quix Streams unavailable: {err}")
            found = await landed(prepared.settings, prepared.expected)
            left = await _topics_of(job.bootstrap_servers, job.group)
            return found, job.readings, left, run.startup_s, " ".join(run.notes)

    found, readings, left, startup_s, notes = asyncio.run(scenario())
    assert found["raw_readings"] == readings
    assert found["windows_complete"] == found["windows_written"] > 0
    assert found["windows_written"] < found["windows_expected"]  # the last minute stays open
    assert startup_s is not None  # its first point was seen in InfluxDB
    assert left == []
    assert "dropped 1 invalid readings and skipped 1 records that were not JSON" in notes
