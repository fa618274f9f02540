"""Fixtures for the processor tests: private topics and groups on the real local Kafka.

Every test gets its own ``kotaflow.raw/readings/deadletter`` topics and consumer groups
(unique names), so tests of other parts and parallel runs never see each other's records;
tests on the full stack also get InfluxDB buckets of their own (``scratch_ledger`` in
``tests/conftest.py``), deleted at teardown. The helpers behind them are in
tests/support/private_pipeline.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from tests.conftest import ScratchLedger
from tests.support.private_pipeline import (
    device_tag,
    private_fleet,
    private_pipeline,
    quick_flushes,
)

log = logging.getLogger("tests.processors")


@pytest.fixture(scope="session")
def kafka_stack(settings: Settings) -> Settings:
    """Just Kafka, up and healthy (for tests that need no InfluxDB)."""
    from deploy.local import stack as local_stack

    statuses = local_stack.up(settings, log.info, only={"kafka"})
    if not all(s.healthy for s in statuses):
        pytest.fail(f"kafka unhealthy: {statuses}")
    return settings


@pytest.fixture
def on_kafka(kafka_stack: Settings) -> Iterator[Settings]:
    """Private topics/groups on the real Kafka (no InfluxDB needed)."""
    yield from private_pipeline(kafka_stack)


@pytest.fixture
def on_stack(stack: Settings, scratch_ledger: ScratchLedger, tmp_path: Path) -> Iterator[Settings]:
    """Private topics/groups and InfluxDB buckets on the full real stack; every stage uses
    a token with the rights the local stack gives its role, on those buckets only."""
    tokens = tmp_path / "influx-tokens"
    tokens.mkdir()
    yield from private_pipeline(stack, scratch_ledger, tokens)


@pytest.fixture
def on_stack_fleet(on_stack: Settings, tmp_path: Path) -> Settings:
    """Private topics, groups and device ids on the full stack, with quick flushes."""
    return quick_flushes(private_fleet(on_stack, tmp_path, device_tag(on_stack)))
