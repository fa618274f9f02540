"""A broker restart loses nothing the broker acked (issue 16, case 4).

Each test runs its own Mosquitto (the local stack's build and rendered config, on free ports,
in the test's tmp dir), so it can stop and SIGKILL it without touching the shared broker.
With ``kotaflow bridge`` down, devices' messages queue in the bridge's persistent session;
then the broker restarts, the bridge comes back, and the test counts what reached Kafka.

- Graceful restart (SIGTERM): Mosquitto writes every session and queued message to its
  persistence file on the way down, so all of them reach Kafka.
- kill -9: Mosquitto saves only every ``autosave_interval`` seconds, so what it acked since
  the last save may be lost. The test pins that window: everything acked more than one
  window before the kill survives; it logs how many of the last burst were lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bridge_support import BridgeRun, Publisher, TopicReader, free_port, ids_of, wait_for_log

from deploy.local.mosquitto import VERSION, Mosquitto
from deploy.local.service import read_pid
from kotaflow.settings import Settings

log = logging.getLogger("tests.broker_restart")

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

DEVICES, PER_DEVICE = 50, 100  # 5,000 queued messages
QUIET_S = 5.0
"""Once the bridge is subscribed, Kafka has seen the whole restored queue when no record
arrived for this long (it drains 5,000 messages in well under a second)."""


@dataclass
class PrivateBroker:
    """A Mosquitto of the test's own: the stack's service on other ports and state dir."""

    settings: Settings
    service: Mosquitto

    @property
    def pid(self) -> int:
        pid = read_pid(self.service._paths.pidfile, expect=str(self.service.config_file))
        assert pid is not None, "the private broker is not running"
        return pid

    def restart(self) -> None:
        """SIGTERM (Mosquitto saves everything on the way down), then start again."""
        self.service.stop(log.info)
        self.service.start(log.info)

    def kill_and_start(self) -> None:
        """SIGKILL (nothing saved since the last autosave), then start again."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # the broker is our child (the service spawned it): reap it
        self.service.start(log.info)

    def autosave_window_s(self) -> float:
        """The longest a message acked by the broker may wait for the next save.

        In seconds mode Mosquitto saves once ``now > last_save + autosave_interval`` with
        whole-second clocks, so saves come up to ``autosave_interval + 1`` s apart."""
        text = self.service.config_file.read_text(encoding="utf-8")
        assert not re.search(r"^autosave_on_changes\s+true", text, re.M)
        found = re.search(r"^autosave_interval\s+(\d+)", text, re.M)
        assert found, "the rendered config sets no autosave_interval"
        return int(found.group(1)) + 1.0

    def env(self) -> dict[str, str]:
        """What a ``kotaflow`` child needs to reach this broker (accounts from its state)."""
        return {
            "KOTAFLOW_MQTT__PORT": str(self.settings.mqtt.port),
            "KOTAFLOW_MQTT__TLS_PORT": str(self.settings.mqtt.tls_port),
            "KOTAFLOW_STACK__STATE_DIR": str(self.settings.stack.state_dir),
        }


@pytest.fixture
def broker(stack: Settings, tmp_path: Path) -> Iterator[PrivateBroker]:
    settings = stack.model_copy(
        update={
            "mqtt": stack.mqtt.model_copy(update={"port": free_port(), "tls_port": free_port()}),
            "stack": stack.stack.model_copy(update={"state_dir": tmp_path / "broker-state"}),
        }
    )
    service = Mosquitto(settings)
    service.install(log.info)  # the cached build (builds it on a clean machine)
    service.start(log.info)
    try:
        yield PrivateBroker(settings, service)
    finally:
        service.stop(log.info)


@pytest.fixture
def bridge_on_broker(
    bridge_run: BridgeRun, broker: PrivateBroker, monkeypatch: pytest.MonkeyPatch
) -> BridgeRun:
    """``bridge_run``'s bridges connect to the private broker (Kafka stays the shared one)."""
    for name, value in broker.env().items():
        monkeypatch.setenv(name, value)
    return bridge_run


def _leave_session_queueing(run: BridgeRun) -> None:
    """Run the bridge once (its persistent session subscribes), then stop it: from now on
    the broker queues every device message for that session."""
    bridge = run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(timeout=30) == 0


def _publish(broker: PrivateBroker, run: BridgeRun, first_seq: int, per_device: int) -> set[str]:
    """QoS 1 messages from ``DEVICES`` devices; returns their ids once the broker acked all."""
    publisher = Publisher(broker.settings, f"test-pub-{run.rid}-{first_seq}")
    messages = [
        (f"kotaflow/{run.device(d)}/telemetry", f'{{"id": "{run.device(d)}:{seq}"}}'.encode())
        for seq in range(first_seq, first_seq + per_device)
        for d in range(DEVICES)
    ]
    publisher.publish(messages)
    publisher.finish(timeout_s=60)
    return {payload.decode().split('"')[3] for _, payload in messages}


async def _delivered_after_restart(run: BridgeRun) -> set[str]:
    """Start the bridge again and collect every id that reaches Kafka until it goes quiet."""
    run.spawn_bridge(1)
    async with TopicReader(run.settings, run.raw_topic) as reader:
        wait_for_log(run, 1, "MQTT subscribed")
        quiet_since = time.monotonic()
        deadline = quiet_since + 60
        while time.monotonic() - quiet_since < QUIET_S:
            assert time.monotonic() < deadline, "the bridge kept delivering for 60 s"
            if await reader.poll():
                quiet_since = time.monotonic()
        return set(ids_of(reader.records))


async def test_graceful_broker_restart_loses_no_queued_message(
    bridge_on_broker: BridgeRun, broker: PrivateBroker
) -> None:
    run = bridge_on_broker
    _leave_session_queueing(run)
    acked = _publish(broker, run, 0, PER_DEVICE)
    assert len(acked) == DEVICES * PER_DEVICE

    broker.restart()
    assert broker.service.status().version == VERSION

    delivered = await _delivered_after_restart(run)
    lost = acked - delivered
    log.info("graceful restart: %d of %d queued messages lost", len(lost), len(acked))
    assert not lost, f"{len(lost)} of {len(acked)} acked messages lost, e.g. {sorted(lost)[:5]}"


async def test_broker_kill_loses_only_the_last_autosave_window(
    bridge_on_broker: BridgeRun, broker: PrivateBroker
) -> None:
    run = bridge_on_broker
    _leave_session_queueing(run)
    older = _publish(broker, run, 0, PER_DEVICE)
    await asyncio.sleep(broker.autosave_window_s() + 0.5)  # older is past the window by design
    recent = _publish(broker, run, PER_DEVICE, PER_DEVICE)

    broker.kill_and_start()

    delivered = await _delivered_after_restart(run)
    lost_recent = recent - delivered
    log.info(
        "kill -9 right after the last ack (autosave window %.0f s): %d of %d messages acked "
        "in the window lost, %d of %d older ones",
        broker.autosave_window_s(),
        len(lost_recent),
        len(recent),
        len(older - delivered),
        len(older),
    )
    assert older <= delivered, f"{len(older - delivered)} messages older than the window lost"
