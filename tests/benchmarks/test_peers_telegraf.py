"""The Telegraf peer's configurations, checked by Telegraf itself and run on the real stack.

Needs the cached Telegraf build (``kotaflow bench peers`` builds it once, ~4 min on 2
cores; a test suite should not): without it these tests skip and say how to get it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.children import stop
from benchmarks.e2e_bench import ArrivalPoller
from benchmarks.peers.mqtt_kafka import telegraf_secrets
from benchmarks.peers.telegraf import (
    InfluxSink,
    MqttSource,
    cached_telegraf,
    kafka_to_influx_config,
    mqtt_forward_config,
    mqtt_parse_config,
    spawn_telegraf,
)
from kotaflow.settings import Settings
from kotaflow.wire.raw import DeviceKeyKind, PayloadFormat, RawEnvelope
from tests.support.isolated_kafka import isolated, produce_all, stage_topics

pytestmark = pytest.mark.services


@pytest.fixture
def telegraf(settings: Settings) -> Path:
    binary = cached_telegraf(settings.stack.cache_dir)
    if binary is None:
        pytest.skip("Telegraf not built yet: `kotaflow bench peers --quick` builds it once")
    return binary


def test_telegraf_accepts_every_peer_configuration(telegraf: Path, tmp_path: Path) -> None:
    source = MqttSource("tcp://127.0.0.1:1883", "kotaflow-bridge", "c", ("kotaflow/+/telemetry",))
    sink = InfluxSink("http://127.0.0.1:8086", "kotaflow", "raw", "rollups")
    configs = {
        "forward": mqtt_forward_config(source, "127.0.0.1:9092", "t"),
        "parse": mqtt_parse_config(source, "127.0.0.1:9092", "t", device_glob="b1-*"),
        "envelopes": kafka_to_influx_config("127.0.0.1:9092", "t", "g", sink, line_protocol=False),
        "lines": kafka_to_influx_config("127.0.0.1:9092", "t", "g", sink, line_protocol=True),
    }
    env = {"KF_MQTT_PASSWORD": "x", "KF_INFLUX_TOKEN": "y", "PATH": "/usr/bin:/bin"}
    for name, text in configs.items():
        path = tmp_path / f"{name}.conf"
        path.write_text(text, encoding="utf-8")
        checked = subprocess.run(
            [str(telegraf), "config", "check", "--strict-env-handling", "--config", str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"


def _envelope(device: str, body: object) -> RawEnvelope:
    return RawEnvelope(
        json.dumps(body).encode(),
        f"kotaflow/{device}/telemetry",
        device,
        DeviceKeyKind.DEVICE_ID,
        PayloadFormat.NATIVE_JSON,
        1,
    )


@pytest.mark.asyncio
async def test_backlog_config_writes_every_reading_with_its_device_and_time(
    telegraf: Path, scratch_influx: Settings, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    mine = isolated(scratch_influx, tag, prefix="test")
    now_ms = time.time_ns() // 1_000_000
    ts = now_ms - now_ms % 60_000 - 120_000
    device = f"{tag}-dev1"
    records = [
        _envelope(device, {"ts": ts, "values": {"temperature": 21.5, "humidity": 80.0}}),
        _envelope(  # a batched message: an array of readings
            device,
            [
                {"ts": ts + 1_000, "values": {"temperature": 22.0}},
                {"ts": ts + 2_000, "values": {"temperature": 22.5}},
            ],
        ),
    ]
    influx = mine.influxdb
    sink = InfluxSink(influx.url, influx.org, influx.telemetry_bucket, influx.rollups_bucket)
    config = kafka_to_influx_config(
        mine.kafka.bootstrap_servers,
        mine.kafka.topics.raw,
        f"test-{tag}-telegraf",
        sink,
        line_protocol=False,
    )
    await stage_topics(mine, create=True, partitions=1)
    poller = ArrivalPoller(mine, [], 0)
    child = None
    try:
        await produce_all(
            mine, mine.kafka.topics.raw, [(e.key(), e.payload, e.headers()) for e in records]
        )
        child = spawn_telegraf(telegraf, "telegraf test", config, tmp_path, telegraf_secrets(mine))
        flux = (
            f'from(bucket: "{influx.telemetry_bucket}") |> range(start: 0)'
            ' |> keep(columns: ["_time", "_field", "_value", "kf.device"]) |> group()'
        )
        deadline = time.monotonic() + 30
        rows: list[dict[str, str]] = []
        while len(rows) < 4 and time.monotonic() < deadline:
            child.check_alive()
            rows = await poller.query(flux)
            await asyncio.sleep(0.2)
        assert sorted((r["_field"], r["_value"]) for r in rows) == [
            ("humidity", "80"),
            ("temperature", "21.5"),
            ("temperature", "22"),
            ("temperature", "22.5"),
        ]
        assert {r["kf.device"] for r in rows} == {device}
    finally:
        if child is not None:
            stop(child.proc)
        await poller.close()
        await stage_topics(mine, create=False)
