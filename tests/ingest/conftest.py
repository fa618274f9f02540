"""Fixtures for the bridge's service tests: one isolated namespace per test on the stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest_asyncio
from bridge_support import BridgeRun, create_topics

from kotaflow.mqtt import wipe_mqtt_session
from kotaflow.settings import Settings
from tests.support.isolated_kafka import delete_topics
from tests.support.production_mosquitto import production_broker


@asynccontextmanager
async def _namespace(run: BridgeRun, wipe_sessions: bool) -> AsyncIterator[BridgeRun]:
    """The run's Kafka topics, made before and deleted after; its bridges stopped and, on a
    broker that outlives the test, its MQTT sessions ended."""
    await create_topics(run.settings, [run.raw_topic, run.dead_topic])
    await create_topics(run.settings, [run.lease_topic], partitions=1)
    try:
        yield run
    finally:
        try:
            run.stop_all()
        finally:
            if wipe_sessions:
                for client_id in run.client_ids:
                    wipe_mqtt_session(run.settings, client_id)  # never raises
            # The lease groups commit no offsets: Kafka drops them once they are empty.
            topics = [run.raw_topic, run.dead_topic, run.lease_topic]
            await delete_topics(run.settings, topics)  # never raises


@pytest_asyncio.fixture
async def bridge_run(stack: Settings, tmp_path: Path) -> AsyncIterator[BridgeRun]:
    async with _namespace(BridgeRun(settings=stack, log_dir=tmp_path), wipe_sessions=True) as run:
        yield run


@pytest_asyncio.fixture
async def production_bridge_run(stack: Settings, tmp_path: Path) -> AsyncIterator[BridgeRun]:
    """Like ``bridge_run``, but MQTT is a private broker started with the production config
    (deploy/mosquitto/mosquitto.conf, TLS); Kafka is the stack's. The broker goes with the
    test, sessions and all."""
    with production_broker(tmp_path / "broker") as broker:
        run = BridgeRun(settings=broker.settings(stack), log_dir=tmp_path, mqtt_env=broker.env())
        async with _namespace(run, wipe_sessions=False) as started:
            yield started
