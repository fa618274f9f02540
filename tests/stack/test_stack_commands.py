"""`kotaflow stack up|status` against the running stack: a second `up` is harmless and
`status --json` has the shape scripts rely on."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deploy.local import stack as local_stack
from kotaflow.cli import app
from kotaflow.settings import Settings

STATUS_KEYS = {"name", "healthy", "address", "version", "pid", "log", "detail", "extra"}


@pytest.mark.services
def test_second_stack_up_starts_nothing_and_keeps_the_same_daemons(stack: Settings) -> None:
    before = {s.name: s.pid for s in local_stack.status(stack)}
    lines: list[str] = []
    after = local_stack.up(stack, lines.append)
    assert {s.name: s.pid for s in after} == before
    assert all(s.healthy for s in after)
    assert before["mosquitto"] is not None
    assert before["kafka"] is not None
    assert not [line for line in lines if "starting" in line or "formatting" in line], lines


@pytest.mark.services
def test_status_json_reports_health_address_and_version_of_each_service(
    stack: Settings,
) -> None:
    result = CliRunner().invoke(app, ["stack", "status", "--json"])
    assert result.exit_code == 0, result.output
    services = {s["name"]: s for s in json.loads(result.stdout)["services"]}
    assert {"mosquitto", "kafka"} <= services.keys()
    for status in services.values():
        assert set(status) == STATUS_KEYS
        assert status["healthy"] is True
        assert status["version"]
    assert isinstance(services["mosquitto"]["pid"], int)
    assert isinstance(services["kafka"]["pid"], int)
    assert services["mosquitto"]["address"] == f"{stack.mqtt.host}:{stack.mqtt.port}"
    assert services["kafka"]["address"] == stack.kafka.bootstrap_servers.split(",")[0]
    assert stack.kafka.topics.raw in services["kafka"]["extra"]["topics"]
