"""No message waits in a session that no running bridge reads (issue 16, case 3): a session
left behind under another client id only gets copies, and when the active bridge of two is
SIGKILLed the standby takes the same session over and delivers everything."""

from __future__ import annotations

import logging
import signal
import time

import pytest
from bridge_support import (
    BridgeRun,
    Publisher,
    TopicReader,
    abandon_a_session,
    first_to_log,
    ids_of,
    publish_and_collect,
    traffic,
    wait_for_log,
)

log = logging.getLogger("tests.bridge")

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

ACQUIRED = "lease acquired"


@pytest.mark.timeout(240)
async def test_abandoned_session_and_a_sigkilled_active_bridge_lose_nothing(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    abandon_a_session(run, run.client_id(9))  # wiped at teardown with the others
    devices, per_device = 50, 100  # 5,000 messages over ~5 s
    expected = {f"{run.device(d)}:{s}" for d in range(devices) for s in range(per_device)}
    for n in (1, 2):  # two replicas of one bridge: the same MQTT session
        run.spawn_bridge(n, session=1)
    active = first_to_log(run, (1, 2), ACQUIRED)
    standby = 3 - active
    wait_for_log(run, active, "MQTT subscribed")
    wait_for_log(run, standby, "lease: waiting in group")
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    sending = publisher.publish_in_background(traffic(run, devices, per_device), rate_per_s=1000)

    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: len(reader.records) >= 0.3 * len(expected), 60)
        killed_at = time.monotonic()
        run.processes[active - 1].send_signal(signal.SIGKILL)
        run.processes[active - 1].wait()
        await reader.until(lambda: ACQUIRED in run.log_text(standby), 30)
        takeover_s = time.monotonic() - killed_at
        sending.join()
        publisher.finish()
        published_at = time.monotonic()
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=30)
        all_in_s = time.monotonic() - published_at

    log.info("takeover after SIGKILL %.1f s; all in %.1f s after publishing", takeover_s, all_in_s)
    print(f"takeover after SIGKILL: {takeover_s:.1f} s")
    assert expected <= set(ids_of(reader.records))
    assert takeover_s < 30


@pytest.mark.timeout(120)
async def test_sigterm_hands_the_session_to_the_standby_at_once(bridge_run: BridgeRun) -> None:
    run = bridge_run
    for n in (1, 2):
        run.spawn_bridge(n, session=1)
    active = first_to_log(run, (1, 2), ACQUIRED)
    standby = 3 - active
    wait_for_log(run, active, "MQTT subscribed")
    wait_for_log(run, standby, "lease: waiting in group")
    stopped_at = time.monotonic()
    run.processes[active - 1].send_signal(signal.SIGTERM)
    assert run.processes[active - 1].wait(timeout=30) == 0
    wait_for_log(run, standby, "MQTT subscribed", timeout_s=20)
    handover_s = time.monotonic() - stopped_at
    log.info("graceful handover %.1f s", handover_s)
    assert handover_s < 15
    await publish_and_collect(run, 10, 10)


@pytest.mark.timeout(120)
async def test_a_standby_joining_leaves_the_active_bridge_connected(bridge_run: BridgeRun) -> None:
    """The rebalance a new standby causes gives the lease back to the active one (sticky
    assignor): no handover, no reconnect."""
    run = bridge_run
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    run.spawn_bridge(2, session=1)
    wait_for_log(run, 2, "standing by, another bridge is active", timeout_s=30)
    assert "lease lost" not in run.log_text(1)
    assert run.log_text(1).count('"MQTT connected"') == 1
    assert "MQTT connected" not in run.log_text(2)
    await publish_and_collect(run, 5, 5)
