"""The Quix Streams peer on the real stack: its venv installs (cached after the first time,
a few seconds from PyPI here), and the app drains a small backlog into scratch buckets:
every reading stored, every window it closed complete and the last minute open, a record
that is not JSON and one of an unknown device skipped and counted, the whole topic
committed, and no topic of Quix's own left behind. About 10-20 s once the venv is cached."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.children import stop
from benchmarks.e2e_bench import ArrivalPoller
from benchmarks.isolation import scratch_buckets
from benchmarks.peers.backlog import influx_target
from benchmarks.peers.common import BacklogJob, PeerNotRunError
from benchmarks.peers.drain import KafkaProgress
from benchmarks.peers.quix_peer import delete_internal_topics, install_quix, spawn_quix_app
from benchmarks.peers.windows import (
    backlog_readings,
    complete_windows,
    expected_windows,
    found_windows,
    rollup_flux,
    stored_readings,
)
from benchmarks.processors_throughput import PARTITIONS, backlog, cleanup, fill
from kotaflow.kafka import client_options
from kotaflow.settings import load_settings
from tests.support.isolated_kafka import isolated, produce_all

pytestmark = pytest.mark.services

MESSAGES = 6000
"""40 devices x 150 s: two closed minutes per device at least, the last one open."""
DRAIN_TIMEOUT_S = 120


async def _topics_with(settings_options: dict[str, object], part: str) -> list[str]:
    admin = AIOKafkaAdminClient(**settings_options)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if part in t]
    finally:
        await admin.close()


def test_quix_app_drains_a_backlog_at_least_once_into_both_buckets(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    base = isolated(load_settings(), tag, prefix="test")
    try:
        python = install_quix(base)
    except PeerNotRunError as err:  # e.g. no PyPI to install it from
        pytest.skip(f"Quix Streams unavailable: {err}")
    envelopes, readings = backlog(base, MESSAGES)
    expected = expected_windows(backlog_readings((e.device_key, e.payload) for e in envelopes))

    async def scenario() -> tuple[int, dict[tuple[str, str, int], int], list[str], str]:
        async with scratch_buckets(base, tag, prefix="test") as mine:
            try:
                await fill(mine, envelopes)
                stranger = json.dumps({"ts": 1, "values": {"x": 1}}).encode()
                bad = [(b"d-01", b"{not json", []), (b"nobody", stranger, [])]
                await produce_all(mine, mine.kafka.topics.raw, bad)
                job = BacklogJob(
                    mine.kafka.bootstrap_servers,
                    mine.kafka.topics.raw,
                    PARTITIONS,
                    f"test-{tag}-quix",
                    MESSAGES + len(bad),
                    readings,
                    influx_target(mine),
                    tmp_path,
                )
                app = spawn_quix_app(job, python, mine)
                try:
                    async with KafkaProgress(client_options(mine)) as kafka:
                        done = kafka.all_committed({(job.group, job.topic): job.messages})
                        deadline = time.monotonic() + DRAIN_TIMEOUT_S
                        while not await done():
                            app.child.check_alive()
                            assert time.monotonic() < deadline, app.child.tail()
                            await asyncio.sleep(0.2)  # polling offsets with a deadline
                finally:
                    stop(app.child.proc)
                assert await delete_internal_topics(mine, job.group)  # it had a changelog
                left = await _topics_with(client_options(mine), f"__{job.group}--")
                poller = ArrivalPoller(mine, [], 0)
                try:
                    bucket = job.influx.raw_bucket
                    metrics = {m for _, m, _ in expected}
                    stored = await stored_readings(poller.query, bucket, metrics)
                    found = found_windows(await poller.query(rollup_flux(job.influx.rollup_bucket)))
                finally:
                    await poller.close()
                return stored, found, left, " ".join(app.notes())
            finally:
                await cleanup(mine)

    stored, found, left, notes = asyncio.run(scenario())
    assert stored == readings
    assert complete_windows(expected, found) == len(found) > 0
    assert len(found) < len(expected)  # each device's last minute never closes
    assert left == []
    assert "dropped 1 invalid readings and skipped 1 records that were not JSON" in notes
