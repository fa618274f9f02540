"""The operator's path on the real Mosquitto, Kafka and InfluxDB, with the bridge and the
stages running throughout: a reading from an unregistered device (published through the
gateway account) is dead-lettered; a bad registry edit is refused
and the registry in force stays; ``devices add`` registers the device and validate takes
it up without a restart; ``deadletter replay`` stores the reading at its original receive
time, and a second replay changes nothing stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from kotaflow.mqtt import wipe_mqtt_session
from kotaflow.processes import stop_gracefully
from kotaflow.settings import Settings
from processors.deadletters.reader import LetterFilter, read_letters
from processors.runner import StageName
from processors.runtime.health import Health
from processors.runtime.influx import InfluxSink
from tests.ingest.bridge_support import Publisher
from tests.processors.helpers import native, now_ms, produce, running, wait_for
from tests.support.influx_check import telemetry

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

NEW_DEVICE_ARGS = [
    "--type",
    "weather",
    "--name",
    "Added by the operator test",
    "--kecamatan",
    "Ruteng",
    "--latitude",
    "-8.61",
    "--longitude",
    "120.46",
    "--elevation-m",
    "1160",
]


def tag_of(s: Settings) -> str:
    return "t" + s.kafka.topics.raw.split(".")[1][:8]


def cli_env(s: Settings) -> dict[str, str]:
    t = s.kafka.topics
    return {
        "KOTAFLOW_REGISTRY_FILE": str(s.registry_file),
        "KOTAFLOW_KAFKA__TOPICS__RAW": t.raw,
        "KOTAFLOW_KAFKA__TOPICS__READINGS": t.readings,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": t.deadletter,
        "KOTAFLOW_PROCESSING__VALIDATION__GROUP_ID": s.processing.validation.group_id,
        "KOTAFLOW_PROCESSING__STORE__GROUP_ID": s.processing.store.group_id,
        "KOTAFLOW_PROCESSING__AGGREGATE__GROUP_ID": s.processing.aggregate.group_id,
    }


async def kotaflow(s: Settings, *args: str) -> Result:
    """``kotaflow ARGS`` with this test's topics and registry (in a thread: the command
    runs its own event loop)."""
    from kotaflow.cli import app

    result = await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=cli_env(s), catch_exceptions=False
    )
    return result


@pytest_asyncio.fixture
async def cleaned(on_stack_fleet: Settings) -> AsyncIterator[Settings]:
    """The test's settings; its points (telemetry of its devices, the replay's health
    point) are deleted afterwards."""
    yield on_stack_fleet
    s, tag = on_stack_fleet, tag_of(on_stack_fleet)
    await delete_points(s, s.influxdb.telemetry_bucket, "device", f"{tag}-")
    await delete_points(s, s.influxdb.rollups_bucket, "topic", s.kafka.topics.deadletter)


async def delete_points(s: Settings, bucket: str, tag: str, prefix: str) -> None:
    """Delete the points whose ``tag`` starts with ``prefix`` (the delete API takes only
    equality, so each value found is deleted by name)."""
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

    from processors.runtime.influx import WRITE_ROLE, resolve_token

    flux = (
        f'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: "{bucket}", tag: "{tag}", start: -30d)'
    )
    async with InfluxSink(s) as influx:
        values = [r["_value"] for r in await influx.query(flux)]
    token = resolve_token(s, WRITE_ROLE)
    async with InfluxDBClientAsync(s.influxdb.url, token, org=s.influxdb.org) as client:
        for value in values:
            if str(value).startswith(prefix):
                await client.delete_api().delete(
                    "1970-01-01T00:00:00Z",
                    "2100-01-01T00:00:00Z",
                    f'{tag}="{value}"',
                    bucket=bucket,
                    org=s.influxdb.org,
                )


def counter(health: Health, stage: str, name: str) -> float:
    return health.value(stage, name)


@pytest.fixture
def bridge(on_stack_fleet: Settings, tmp_path: Path) -> Iterator[Path]:
    """``kotaflow bridge`` on this test's raw and dead-letter topics, with its own client id
    and share group (its session wiped afterwards); yields its log file."""
    s = on_stack_fleet
    client_id = f"test-ops-{tag_of(s)}"
    log_file = tmp_path / "bridge.log"
    env = {
        **os.environ,
        "KOTAFLOW_KAFKA__TOPICS__RAW": s.kafka.topics.raw,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": s.kafka.topics.deadletter,
        "KOTAFLOW_BRIDGE__CLIENT_ID": client_id,
        "KOTAFLOW_BRIDGE__SHARE_GROUP": client_id,
        "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "600",
        "KOTAFLOW_BRIDGE__METRICS_PORT": "0",
    }
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kotaflow", "bridge"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield log_file
    finally:
        stop_gracefully(proc, 30)
        wipe_mqtt_session(s, client_id)


def logged(path: Path, text: str) -> bool:
    return text in path.read_text(errors="replace", encoding="utf-8")


def publish_as_gateway(s: Settings, topic: str, payload: bytes) -> None:
    """One QoS 1 message from the gateway account (it may publish for any device)."""
    publisher = Publisher(s, f"test-ops-pub-{tag_of(s)}")
    publisher.publish([(topic, payload)])
    publisher.finish()


async def test_unknown_device_added_and_replayed(
    cleaned: Settings, bridge: Path, tmp_path: Path
) -> None:
    s = cleaned
    tag = tag_of(s)
    new = f"{tag}-new-01"
    known = f"{tag}-rtg-wx-01"
    assert s.registry_file is not None
    registry = s.registry_file
    replay_log = tmp_path / "replays.jsonl"
    async with running(s, StageName.VALIDATE, StageName.STORE) as health:
        await wait_for(lambda: logged(bridge, "MQTT subscribed"), 60, "the bridge subscribed")
        # no device time in the payload: the reading's time is the bridge's receive time
        await asyncio.to_thread(
            publish_as_gateway, s, f"kotaflow/{new}/telemetry", b'{"temperature": 21.5}'
        )

        async def dead_letter() -> Any:
            found = await read_letters(s, LetterFilter(devices=frozenset({new})))
            return found.letters

        (letter,) = await wait_for(dead_letter, 60, "the unknown device's dead letter")
        assert letter.letter.reason.value == "unknown_device"
        rx_ms = letter.letter.source["rx_ms"]
        assert abs(now_ms() - rx_ms) < 60_000

        # A bad edit (an unknown kecamatan) is refused; the registry in force stays.
        good_text = registry.read_text(encoding="utf-8")
        registry.write_text(
            good_text.replace("kecamatan: Ruteng", "kecamatan: Atlantis", 1), encoding="utf-8"
        )
        await wait_for(
            lambda: counter(health, "validate", "fleet_reloads_refused") >= 1,
            30,
            "the bad registry refused",
        )
        t_known = now_ms() - 60_000
        known_raw = native(known, {"temperature": 19.0}, t_known, now_ms())
        await produce(s, s.kafka.topics.raw, [known_raw])
        await wait_for(
            lambda: _has(s, tag, (known, "temperature", t_known)), 60, "a known device stored"
        )
        registry.write_text(good_text, encoding="utf-8")
        await wait_for(
            lambda: counter(health, "validate", "fleet_reloads_accepted") >= 1,
            30,
            "the good registry taken up again",
        )

        added = await kotaflow(
            s,
            "devices",
            "add",
            new,
            *NEW_DEVICE_ARGS,
            "--json",
            "--credentials-dir",
            str(tmp_path / "broker"),
        )
        assert added.exit_code == 0, added.output
        settings_out = json.loads(added.output)
        assert settings_out["user"] == new
        assert settings_out["password"]
        assert settings_out["topics"]["native_json"] == f"kotaflow/{new}/telemetry"
        await wait_for(
            lambda: counter(health, "validate", "fleet_reloads_accepted") >= 2,
            30,
            "validate taking up the new device",
        )

        dry = await kotaflow(
            s,
            "deadletter",
            "replay",
            "--device",
            new,
            "--dry-run",
            "--json",
            "--log",
            str(replay_log),
        )
        assert dry.exit_code == 0, dry.output
        plans = json.loads(dry.output)
        assert [p["action"] for p in plans["letters"]] == ["replay"]
        assert plans["letters"][0]["readings"] == 1
        assert not replay_log.exists()

        first = await kotaflow(
            s, "deadletter", "replay", "--device", new, "--json", "--log", str(replay_log)
        )
        assert json.loads(first.output)["summary"]["replayed"] == 1, first.output
        point = (new, "temperature", rx_ms)
        await wait_for(lambda: _has(s, tag, point), 60, "the replayed reading stored")
        stored = await telemetry(s, tag)

        skipped = await kotaflow(
            s, "deadletter", "replay", "--device", new, "--json", "--log", str(replay_log)
        )
        assert json.loads(skipped.output)["summary"]["replayed"] == 0  # in the replay log

        before = counter(health, "store", "records_in")
        again = await kotaflow(
            s,
            "deadletter",
            "replay",
            "--device",
            new,
            "--again",
            "--json",
            "--log",
            str(replay_log),
        )
        assert json.loads(again.output)["summary"]["replayed"] == 1
        await wait_for(
            lambda: counter(health, "store", "records_in") > before, 60, "the second replay"
        )
        await asyncio.sleep(2 * s.processing.store.flush_interval_s)
        assert await telemetry(s, tag) == stored  # nothing new, nothing changed
        assert stored[point] == 21.5
    log_lines = [json.loads(line) for line in replay_log.read_text(encoding="utf-8").splitlines()]
    assert [e["replayed"] for e in log_lines] == [1, 1]
    assert all(e["user"] and e["ids"] == [letter.id] for e in log_lines)


async def _has(s: Settings, tag: str, point: tuple[str, str, int]) -> bool:
    return point in await telemetry(s, tag)


async def test_status_reports_a_stopped_stage_within_30_s(on_kafka: Settings) -> None:
    s = on_kafka

    async def validate_state() -> tuple[bool, str]:
        result = await kotaflow(s, "status", "--json", "--no-stack")
        part = next(p for p in json.loads(result.stdout)["parts"] if p["name"] == "validate")
        return part["healthy"], part["state"]

    async with running(s, StageName.VALIDATE):

        async def alive() -> bool:
            return (await validate_state()) == (True, "alive")

        await wait_for(alive, 60, "validate reported alive")
    stopped_at = time.monotonic()

    async def stopped() -> bool:
        return not (await validate_state())[0]

    await wait_for(stopped, 30, "validate reported unhealthy")
    assert time.monotonic() - stopped_at < 30
