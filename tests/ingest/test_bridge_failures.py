"""The bridge loses nothing when it is killed, stopped, or Kafka refuses its records."""

from __future__ import annotations

import logging
import signal

import pytest
from bridge_support import (
    BridgeRun,
    Publisher,
    TopicReader,
    free_port,
    ids_of,
    resumed_session,
    scrape,
    set_topic_config,
    traffic,
    wait_for_log,
)

from kotaflow.mqtt import Account

log = logging.getLogger("tests.bridge")

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


def _expected(run: BridgeRun, devices: int, per_device: int) -> set[str]:
    return {f"{run.device(d)}:{s}" for d in range(devices) for s in range(per_device)}


@pytest.mark.timeout(420)
async def test_nothing_lost_when_the_bridge_is_sigkilled_twice_mid_stream(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    devices, per_device = 50, 400  # 20,000 messages
    expected = _expected(run, devices, per_device)
    bridge = run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    # The publisher pauses at 35% and 70% until the bridge has been killed there, so each
    # kill lands mid-stream however slowly the bridge restarts on a busy machine.
    publisher.hold_at(0.35 * len(expected))
    sending = publisher.publish_in_background(traffic(run, devices, per_device), rate_per_s=2000)

    async with TopicReader(run.settings, run.raw_topic) as reader:
        kills_at_sent = []
        for kill_from, hold_next in ((0.25, 0.70), (0.60, float("inf"))):
            delivered_before = len(reader.records)

            def delivering(f: float = kill_from, before: int = delivered_before) -> bool:
                return publisher.sent >= f * len(expected) and len(reader.records) > before

            await reader.until(delivering, 180)
            bridge.send_signal(signal.SIGKILL)
            bridge.wait()
            kills_at_sent.append(publisher.sent)
            bridge = run.spawn_bridge(1)  # same client id: resumes the session
            publisher.hold_at(hold_next * len(expected))
        sending.join()
        publisher.finish()
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=240)

    seen = ids_of(reader.records)
    duplicates = sum(n - 1 for key, n in seen.items() if key in expected)
    log.info("killed at %s published; %d duplicates", kills_at_sent, duplicates)
    assert all(sent < len(expected) for sent in kills_at_sent), "kills were not mid-stream"
    assert expected <= set(seen)


@pytest.mark.timeout(300)
async def test_sigterm_drains_in_flight_work_so_a_restart_sees_no_duplicates(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    devices, per_device = 20, 250  # 5,000 messages over ~5 s
    expected = _expected(run, devices, per_device)
    bridge = run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    sending = publisher.publish_in_background(traffic(run, devices, per_device), rate_per_s=1000)

    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: len(reader.records) >= 0.3 * len(expected), 120)
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=60) == 0
        assert "bridge stopped" in run.log_text(1)
        run.spawn_bridge(1)
        sending.join()
        publisher.finish()
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=180)

    seen = ids_of(reader.records)
    duplicates = sum(n - 1 for key, n in seen.items() if key in expected)
    assert expected <= set(seen)
    assert duplicates == 0


@pytest.mark.timeout(300)
async def test_kafka_refusing_records_stops_acks_and_the_broker_redelivers_after(
    bridge_run: BridgeRun,
) -> None:
    """Kafka refuses every record (the topic's limit lowered below any batch while the bridge
    runs: a configuration fault, not the data's): acks stop, the bridge cycles through
    reconnects; once Kafka accepts again everything published meanwhile arrives."""
    run = bridge_run
    devices, per_device = 20, 100
    expected = _expected(run, devices, per_device)
    port = free_port()
    run.spawn_bridge(1, metrics_port=port)
    wait_for_log(run, 1, "MQTT subscribed")
    await set_topic_config(run.settings, run.raw_topic, {"max.message.bytes": "64"})
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    publisher.publish(traffic(run, devices, per_device))
    publisher.finish()
    wait_for_log(run, 1, "produce failed; acks stopped")
    wait_for_log(run, 1, "recovering from a Kafka failure")
    metrics = scrape(port)
    assert metrics["kotaflow_bridge_kafka_failures_total"] >= 1
    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.poll()
    # (other users' traffic on the shared broker may have gone through before the change)
    assert not expected & set(ids_of(reader.records)), "a refused record was acked"

    await set_topic_config(run.settings, run.raw_topic, {"max.message.bytes": "1048588"})
    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=180)
    assert expected <= set(ids_of(reader.records))


@pytest.mark.timeout(300)
async def test_a_lost_mqtt_connection_resumes_the_session_and_loses_nothing(
    bridge_run: BridgeRun,
) -> None:
    """The broker drops the bridge's connection mid-stream (another client takes over the
    session, as a network blip followed by a stale reconnect would); paho reconnects, the
    bridge starts a new ack window and the broker redelivers what was not acked."""
    run = bridge_run
    devices, per_device = 20, 200  # 4,000 messages
    expected = _expected(run, devices, per_device)
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    sending = publisher.publish_in_background(traffic(run, devices, per_device), rate_per_s=1000)

    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: len(reader.records) > 500, 60)
        # Another connection with the bridge's client id takes the session over (the broker
        # disconnects the bridge), then leaves it intact for the bridge to resume.
        with resumed_session(run, Account.BRIDGE, run.client_id(1)) as present:
            assert present, "could not take the session over"
        wait_for_log(run, 1, '"connection": 2')  # paho reconnected on its own
        sending.join()
        publisher.finish()
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=120)
    assert expected <= set(ids_of(reader.records))
