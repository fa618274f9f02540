"""Aggregate commits as soon as the input went quiet and every window is written (the end
of a backlog), not only at the next rollup interval; with a window still open it waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from processors.runtime.stage_loop import StageLoop
from tests.contracts.stage_harnesses import FAST, AggregateHarness, Env

pytestmark = pytest.mark.asyncio
DEADLINE_S = 5.0


class SlowRollups(AggregateHarness):
    """Hourly/daily rollups (and so the regular commits) only every hour."""

    grace_s = 0.0

    def settings(self, base: Settings, flush: float) -> Settings:
        settings = super().settings(base, flush)
        slow = settings.processing.aggregate.model_copy(
            update={"rollup_interval_s": 3600.0, "grace_s": self.grace_s}
        )
        processing = settings.processing.model_copy(update={"aggregate": slow})
        return settings.model_copy(update={"processing": processing})


class OpenWindows(SlowRollups):
    grace_s = 3600.0  # no window closes


def _setup(harness: AggregateHarness, settings: Settings, tmp: Path) -> tuple[Env, StageLoop]:
    env, loop = harness.loop(settings, tmp, FAST)
    for i in range(6):
        harness.good(env, i)
    return env, loop


async def test_the_end_of_a_backlog_is_committed_without_waiting_for_the_rollup_interval(
    settings: Settings, tmp_path: Path
) -> None:
    harness = SlowRollups()
    env, loop = _setup(harness, settings, tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    group = env.settings.processing.aggregate.group_id
    ends = {tp: len(log) for tp, log in env.kafka.logs.items()}
    deadline = time.monotonic() + DEADLINE_S
    while {tp: om.offset for tp, om in env.kafka.committed.get(group, {}).items()} != ends:
        assert not task.done(), task.exception()
        assert time.monotonic() < deadline, "the quiet input's last windows were not committed"
        await asyncio.sleep(0.01)
    records = [r for log in env.kafka.logs.values() for r in log]
    assert all(harness.written(env, r) for r in records), "committed before written"
    stop.set()
    await asyncio.wait_for(task, DEADLINE_S)


async def test_an_open_window_holds_the_commit_until_the_rollup_interval(
    settings: Settings, tmp_path: Path
) -> None:
    env, loop = _setup(OpenWindows(), settings, tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    (consumer,) = env.clients.consumers
    deadline = time.monotonic() + DEADLINE_S
    while consumer.empty_polls < 3:
        assert time.monotonic() < deadline, "the records were not all polled"
        await asyncio.sleep(0.01)
    assert env.kafka.committed.get(env.settings.processing.aggregate.group_id, {}) == {}
    stop.set()
    await asyncio.wait_for(task, DEADLINE_S)
