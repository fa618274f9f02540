"""The lease's own bookkeeping, driven through its rebalance callbacks (no Kafka here; the
service tests in test_bridge_takeover.py run it against the real group coordinator)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from ingest.lease import BridgeLease, lease_group
from kotaflow.settings import Settings

pytestmark = pytest.mark.asyncio


def _lease() -> BridgeLease:
    return BridgeLease(Settings(bridge={"lease_session_timeout_ms": 6_000}))  # type: ignore[arg-type]


def _tp(lease: BridgeLease, partition: int = 0) -> set[TopicPartition]:
    return {TopicPartition(lease.topic, partition)}


async def test_partition_zero_makes_the_bridge_active_and_losing_it_stands_it_by() -> None:
    lease = _lease()
    assert lease.group_id == lease_group("kotaflow-bridge-1")
    await lease.on_assigned(_tp(lease, 1))  # another partition is no lease
    assert not lease.held.is_set()
    await lease.on_assigned(_tp(lease))
    assert lease.held.is_set()
    assert lease.begin_term()
    await lease.on_revoked(_tp(lease))  # pending: a rebalance may give it back
    assert lease.held.is_set()
    await lease.on_assigned(_tp(lease))  # sticky: given back, the term goes on
    assert lease.held.is_set()
    assert not lease.lost.is_set()
    await lease.on_revoked(_tp(lease))
    await lease.on_assigned(set())  # another bridge has it now
    assert lease.lost.is_set()
    assert not lease.held.is_set()


async def test_a_new_term_waits_until_the_last_one_released_its_connection() -> None:
    lease = _lease()
    await lease.on_assigned(_tp(lease))
    assert lease.begin_term()
    await lease.on_assigned(set())
    again = asyncio.create_task(lease.on_assigned(_tp(lease)))
    await asyncio.sleep(0.05)
    assert not again.done()  # the last term still holds its MQTT connection
    lease.released()
    await asyncio.wait_for(again, 1)
    assert lease.held.is_set()
    assert not lease.lost.is_set()


async def test_a_lease_lost_before_its_term_began_does_not_block_the_next() -> None:
    lease = _lease()
    await lease.on_assigned(_tp(lease))
    await lease.on_assigned(set())  # lost while the bridge was still starting
    await asyncio.wait_for(lease.on_assigned(_tp(lease)), 1)
    assert lease.begin_term()


async def test_a_revoke_without_reassignment_expires_after_the_session_timeout() -> None:
    lease = _lease()
    lease._session_timeout_ms = 50
    await lease.on_assigned(_tp(lease))
    assert lease.begin_term()
    await lease.on_revoked(_tp(lease))
    await asyncio.sleep(0.2)
    assert lease.lost.is_set()
