"""Fixtures for the processor tests: private topics and groups on the real local Kafka.

Every test gets its own ``kotaflow.raw/readings/deadletter`` topics and consumer groups
(unique names), so tests of other parts and parallel runs never see each other's records.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devices.registry import PACKAGED_REGISTRY
from kotaflow.settings import Settings
from tests.support.isolated_kafka import isolated, stage_topics

log = logging.getLogger("tests.processors")
PARTITIONS = 4


def isolate(settings: Settings, tag: str) -> Settings:
    """``settings`` with unique topics and consumer groups for one test."""
    return isolated(settings, tag)


def env_for(settings: Settings) -> dict[str, str]:
    """The same isolation as environment variables, for ``kotaflow process`` subprocesses."""
    t, p = settings.kafka.topics, settings.processing
    return {
        "KOTAFLOW_REGISTRY_FILE": str(settings.registry_file or ""),
        "KOTAFLOW_PROCESSING__VALIDATION__FLUSH_INTERVAL_S": str(p.validation.flush_interval_s),
        "KOTAFLOW_PROCESSING__STORE__FLUSH_INTERVAL_S": str(p.store.flush_interval_s),
        "KOTAFLOW_PROCESSING__AGGREGATE__FLUSH_INTERVAL_S": str(p.aggregate.flush_interval_s),
        "KOTAFLOW_PROCESSING__AGGREGATE__ROLLUP_INTERVAL_S": str(p.aggregate.rollup_interval_s),
        "KOTAFLOW_PROCESSING__AGGREGATE__GRACE_S": str(p.aggregate.grace_s),
        "KOTAFLOW_KAFKA__TOPICS__RAW": t.raw,
        "KOTAFLOW_KAFKA__TOPICS__READINGS": t.readings,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": t.deadletter,
        "KOTAFLOW_PROCESSING__VALIDATION__GROUP_ID": p.validation.group_id,
        "KOTAFLOW_PROCESSING__STORE__GROUP_ID": p.store.group_id,
        "KOTAFLOW_PROCESSING__AGGREGATE__GROUP_ID": p.aggregate.group_id,
    }


@pytest.fixture(scope="session")
def kafka_stack(settings: Settings) -> Settings:
    """Just Kafka, up and healthy (for tests that need no InfluxDB)."""
    from deploy.local import stack as local_stack

    statuses = local_stack.up(settings, log.info, only={"kafka"})
    if not all(s.healthy for s in statuses):
        pytest.fail(f"kafka unhealthy: {statuses}")
    return settings


def _private(base: Settings) -> Iterator[Settings]:
    mine = isolate(base, uuid.uuid4().hex[:10])
    try:
        asyncio.run(stage_topics(mine, create=True, partitions=PARTITIONS))
        yield mine
    finally:  # also after a failed creation: one of the three may exist (never raises)
        asyncio.run(stage_topics(mine, create=False))


@pytest.fixture
def on_kafka(kafka_stack: Settings) -> Iterator[Settings]:
    """Private topics/groups on the real Kafka (no InfluxDB needed)."""
    yield from _private(kafka_stack)


@pytest.fixture
def on_stack(stack: Settings) -> Iterator[Settings]:
    """Private topics/groups on the full real stack (Kafka and InfluxDB)."""
    yield from _private(stack)


def private_fleet(settings: Settings, directory: Path, tag: str) -> Settings:
    """``settings`` whose registry holds the packaged devices renamed ``<tag>-<id>``.

    Points in the shared ``telemetry``/``rollups`` buckets are then this test's alone.
    """
    data = yaml.safe_load(PACKAGED_REGISTRY.read_text())
    for device in data["devices"]:
        device["id"] = f"{tag}-{device['id']}"
        device.pop("dev_eui", None)
        device.pop("tts_device_id", None)
    path = directory / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return settings.model_copy(update={"registry_file": path})


@pytest.fixture
def on_stack_fleet(on_stack: Settings, tmp_path: Path) -> Settings:
    """Private topics, groups and device ids on the full stack, with quick flushes."""
    tag = "t" + on_stack.kafka.topics.raw.split(".")[1][:8]
    s = private_fleet(on_stack, tmp_path, tag)
    p = s.processing
    processing = p.model_copy(
        update={
            "store": p.store.model_copy(update={"flush_interval_s": 0.5}),
            "aggregate": p.aggregate.model_copy(
                update={"flush_interval_s": 0.5, "rollup_interval_s": 2.0, "grace_s": 2.0}
            ),
            "validation": p.validation.model_copy(update={"flush_interval_s": 0.2}),
            "health": p.health.model_copy(update={"interval_s": 1.0}),
        }
    )
    return s.model_copy(update={"processing": processing})
