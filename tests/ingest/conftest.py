"""Fixtures for the bridge's service tests: one isolated namespace per test on the stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from bridge_support import BridgeRun, create_topics

from kotaflow.mqtt import wipe_mqtt_session
from kotaflow.settings import Settings
from tests.support.isolated_kafka import delete_topics


@pytest_asyncio.fixture
async def bridge_run(stack: Settings, tmp_path: Path) -> AsyncIterator[BridgeRun]:
    run = BridgeRun(settings=stack, log_dir=tmp_path)
    await create_topics(stack, [run.raw_topic, run.dead_topic])
    await create_topics(stack, [run.lease_topic], partitions=1)
    try:
        yield run
    finally:
        try:
            run.stop_all()
        finally:
            for client_id in run.client_ids:
                wipe_mqtt_session(stack, client_id)  # never raises
            # The lease groups commit no offsets: Kafka drops them once they are empty.
            topics = [run.raw_topic, run.dead_topic, run.lease_topic]
            await delete_topics(stack, topics)  # never raises
