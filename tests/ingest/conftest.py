"""Fixtures for the bridge's service tests: one isolated namespace per test on the stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from bridge_support import BridgeRun, create_topics, delete_topics, wipe_session

from kotaflow.settings import Settings


@pytest_asyncio.fixture
async def bridge_run(stack: Settings, tmp_path: Path) -> AsyncIterator[BridgeRun]:
    run = BridgeRun(settings=stack, log_dir=tmp_path)
    await create_topics(stack, [run.raw_topic, run.dead_topic])
    try:
        yield run
    finally:
        run.stop_all()
        for client_id in run.client_ids:
            wipe_session(stack, client_id)
        await delete_topics(stack, [run.raw_topic, run.dead_topic])
