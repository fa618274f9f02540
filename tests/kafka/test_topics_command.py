"""``kotaflow kafka topics create`` against the real local Kafka, on topics of its own:
creates with the layout, is idempotent, and reports (never fixes) drift."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from kotaflow.cli import app
from kotaflow.settings import Settings
from tests.support.isolated_kafka import delete_topics

pytestmark = pytest.mark.services
ROLES = ("raw", "readings", "deadletter", "alerts", "bridge_lease")


@pytest.fixture
def topics_env(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment naming every topic role after topics nobody else uses; deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {role: f"test.topics.{tag}.{role}" for role in ROLES}
    for role, name in names.items():
        monkeypatch.setenv(f"KOTAFLOW_KAFKA__TOPICS__{role.upper()}", name)
    monkeypatch.setenv("KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS", stack.kafka.bootstrap_servers)
    monkeypatch.setenv("KOTAFLOW_KAFKA__LAYOUT__RETENTION_HOURS", "2")
    monkeypatch.setenv("KOTAFLOW_KAFKA__LAYOUT__MAX_MESSAGE_BYTES", "300000")
    yield names
    asyncio.run(delete_topics(stack, names.values()))


def _create(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["kafka", "topics", "create", "--json", *args])
    out = result.stdout
    return result.exit_code, json.loads(out[out.index("{") :]), result.output


def test_creates_with_the_layout_then_does_nothing_again(topics_env: dict[str, str]) -> None:
    code, first, output = _create()
    assert code == 0, output
    assert sorted(first["created"]) == sorted(topics_env.values())
    assert first["configs"] == {
        "min.insync.replicas": "1",
        "retention.ms": "7200000",
        "max.message.bytes": "300000",
    }
    code, again, output = _create("--strict")
    assert code == 0, output
    assert again["created"] == []
    assert again["drift"] == []
    assert sorted(again["unchanged"]) == sorted(topics_env.values())


def test_a_topic_that_differs_is_reported_and_left_alone(
    stack: Settings, topics_env: dict[str, str]
) -> None:
    raw = topics_env["raw"]

    async def make_small_raw() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(raw, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(make_small_raw())
    code, outcome, output = _create("--strict")
    assert code == 3, output
    drift = {(d["what"], d["found"], d["wanted"]) for d in outcome["drift"] if d["topic"] == raw}
    assert ("partition count", "2", "6") in drift
    assert ("retention.ms", "604800000", "7200000") in drift
    assert f"topic {raw}: partition count is 2, the layout says 6; left as it is" in " ".join(
        output.split()
    )
    assert raw not in outcome["created"]
    assert len(outcome["created"]) == len(ROLES) - 1
    code, _, _ = _create()  # without --strict drift is reported, not an error
    assert code == 0
