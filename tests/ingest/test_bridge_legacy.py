"""Upgrading from the shared-subscription bridge: old sessions are converted, the deprecated
``share_group`` setting still works and says it is deprecated."""

from __future__ import annotations

import pytest
from bridge_support import (
    BridgeRun,
    abandon_a_session,
    publish_and_collect,
    wait_for_log,
)

pytestmark = [pytest.mark.services, pytest.mark.asyncio]


@pytest.mark.timeout(120)
async def test_a_session_of_the_old_design_drops_its_share_subscriptions(
    bridge_run: BridgeRun,
) -> None:
    """The bridge's own session subscribed through ``$share/kotaflow-bridge/`` (the old
    default) and plainly: after the upgrade it holds the plain filters only, so nothing
    comes twice (a share and a copy) and nothing is dealt to the old group's members."""
    run = bridge_run
    abandon_a_session(run, run.client_id(1), groups=["kotaflow-bridge"], plain=False)
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    seen = await publish_and_collect(run, 10, 20)
    assert max(seen.values()) == 1, "duplicates: a share subscription is left"


@pytest.mark.timeout(120)
async def test_a_deprecated_share_group_is_honoured_and_warned_about(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    run.spawn_bridge(1, share_group=f"legacy-{run.rid}")
    wait_for_log(run, 1, "MQTT subscribed")
    text = run.log_text(1)
    assert "bridge.share_group is deprecated" in text
    assert f"$share/legacy-{run.rid}/kotaflow/+/telemetry" in text
    await publish_and_collect(run, 5, 5)
