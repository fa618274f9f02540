"""``kotaflow process`` started while Kafka is unreachable waits, then processes.

The shared Kafka is never stopped: the process is pointed at a closed port on 127.0.0.1,
and after :data:`KAFKA_DOWN_S` a TCP relay to the real Kafka opens on that port. Kafka
answers the bootstrap with its advertised listener (the real 127.0.0.1:9092), so once the
relay is there the clients talk to the real broker directly: the relay only stands for
"the bootstrap address answers again", which is what a broker coming back looks like.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from tests.processors.helpers import native, now_ms, produce, read_topic
from tests.processors.test_pipeline_to_influx import Outage
from tests.support.private_pipeline import env_for

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

KAFKA_DOWN_S = 30.0
"""The issue's acceptance: Kafka down for 30 s at start."""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_process_started_without_kafka_waits_quietly_then_processes(
    on_kafka: Settings, tmp_path: Path
) -> None:
    s = on_kafka
    t = now_ms()
    await produce(s, s.kafka.topics.raw, [native("rtg-aq-01", {"pm25": 10.0}, t, t)])
    port = closed_port()
    stderr = tmp_path / "process.stderr"
    isolation = {k: v for k, v in env_for(s).items() if v}  # (no private registry here)
    env = {
        **os.environ,
        **isolation,
        "KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KOTAFLOW_METRICS_PORT": "0",
    }
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kotaflow", "process", "--stage", "validate",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    host, _, kafka_port = s.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    relay = Outage(host, int(kafka_port))
    relay.port = port  # it opens where the process already knocks
    try:
        await asyncio.sleep(KAFKA_DOWN_S)
        assert proc.returncode is None, stderr.read_text(encoding="utf-8")[-2000:]
        waiting = stderr.read_text(encoding="utf-8")
        await relay.up()
        readings = await read_topic(s, s.kafka.topics.readings, lambda r: len(r) >= 1, 60)
        assert len(readings) == 1, stderr.read_text(encoding="utf-8")[-2000:]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
        if relay.server is not None:
            await relay.down()
    text = stderr.read_text(encoding="utf-8")
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text
    attempts = [line for line in waiting.splitlines() if "Kafka unreachable" in line]
    assert 3 <= len(attempts) <= 12, waiting  # 1, 2, 4, 8, then every 10 s
    assert len(waiting.splitlines()) <= 3 * len(attempts), waiting  # no flood of repeats
