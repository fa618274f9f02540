"""The stage contract: what every Kafka stage (validate, store, aggregate, alert) must do,
checked through :class:`~processors.runtime.stage_loop.StageLoop` on in-memory stand-ins.

1. Commit only what ``flush`` covers: at every commit, every record below the committed
   offset has durable output (acknowledged by Kafka, written to InfluxDB, saved to SQLite)
   or is a dead letter.
2. Flush and commit before revoke: a partition taken away is flushed and committed inside
   the rebalance, so its next owner starts after what was written.
3. A poison record becomes a dead letter; the stage goes on with the records after it.
4. A failed write commits nothing, and turns no good record into a dead letter.

Each stage plugs in through a harness (``stage_harnesses.py``); the real-service tests in
``tests/processors`` and ``tests/alerting`` pin the same stages end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from kotaflow.settings import Settings
from processors.runtime.stage_loop import StageLoop
from tests.contracts.stage_harnesses import FAST, HARNESSES, NEVER, Env, StageHarness

pytestmark = pytest.mark.asyncio

DEADLINE_S = 5.0
GOOD = 12


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> StageHarness:
    found: StageHarness = request.param
    return found


def uncovered(
    harness: StageHarness, env: Env, offsets: dict[TopicPartition, OffsetAndMetadata]
) -> list[str]:
    """The records below a commit whose output is not durable (nor dead-lettered)."""
    dead = harness.dead_lettered(env)
    missing = []
    for tp, committed in offsets.items():
        for record in env.kafka.logs.get(tp, [])[: committed.offset]:
            where = (record.partition, record.offset)
            done = where in dead if where in env.poison else harness.written(env, record)
            if not done:
                missing.append(f"{tp.topic}[{tp.partition}]@{record.offset}")
    return missing


class Run:
    """A :class:`StageLoop` running as a task, with every commit checked as it happens."""

    def __init__(self, harness: StageHarness, env: Env, loop: StageLoop) -> None:
        self.harness, self.env, self.loop = harness, env, loop
        self.violations: list[str] = []
        env.kafka.check_commit = lambda _group, offsets: self.violations.extend(
            uncovered(harness, env, offsets)
        )
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(loop.run(self.stop))

    async def until(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            if self.task.done():
                self.task.result()  # raises what stopped the loop
                pytest.fail("the stage loop ended before the condition held")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.harness.name}: condition not reached in {DEADLINE_S} s")
            await asyncio.sleep(0.002)

    async def finish(self) -> BaseException | None:
        """Stop the loop (final flush and commit); what it raised, if anything."""
        self.stop.set()
        done, _ = await asyncio.wait({self.task}, timeout=DEADLINE_S)
        if not done:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            return None
        return self.task.exception()

    def committed(self) -> dict[TopicPartition, int]:
        found = self.env.kafka.committed.get(self.loop.stage.consumer_settings.group_id, {})
        return {tp: om.offset for tp, om in found.items()}

    def ends(self) -> dict[TopicPartition, int]:
        return {tp: len(log) for tp, log in self.env.kafka.logs.items()}

    def all_committed(self) -> bool:
        return self.committed() == self.ends()


def start(harness: StageHarness, settings: Settings, tmp_path: Path, flush: float) -> Run:
    env, loop = harness.loop(settings, tmp_path, flush)
    for i in range(GOOD):
        harness.good(env, i)
    return Run(harness, env, loop)


async def test_commits_only_what_flush_covers(
    harness: StageHarness, settings: Settings, tmp_path: Path
) -> None:
    run = start(harness, settings, tmp_path, FAST)
    await run.until(run.all_committed)
    assert await run.finish() is None
    assert run.violations == [], f"committed before the output was durable: {run.violations}"
    assert len(run.env.kafka.commits) > 1, "a dozen records over several polls: several commits"
    assert all(harness.written(run.env, r) for log in run.env.kafka.logs.values() for r in log)


async def test_flushes_and_commits_before_revoke(
    harness: StageHarness, settings: Settings, tmp_path: Path
) -> None:
    run = start(harness, settings, tmp_path, NEVER)
    (consumer,) = run.env.clients.consumers
    await run.until(lambda: consumer.empty_polls > 0)  # all fetched, and handled
    if not harness.saves_every_poll:
        assert run.committed() == {}, "nothing is due: only the revocation may commit"
    gone = TopicPartition(harness.input(run.env), 0)
    consumer.rebalance(revoked={gone}, assigned=set())
    await run.until(lambda: gone not in consumer.assignment)
    assert run.committed().get(gone) == run.ends()[gone], "revoked without its final commit"
    assert all(harness.written(run.env, r) for r in run.env.kafka.logs[gone])
    assert await run.finish() is None
    assert run.violations == [], f"committed before the output was durable: {run.violations}"


async def test_poison_record_becomes_a_dead_letter(
    harness: StageHarness, settings: Settings, tmp_path: Path
) -> None:
    env, loop = harness.loop(settings, tmp_path, FAST)
    harness.good(env, 0)
    harness.good(env, 1)
    poison = harness.poison(env, 0)
    for i in range(2, 6):
        harness.good(env, i)
    run = Run(harness, env, loop)
    await run.until(run.all_committed)
    assert not run.task.done(), "a poison record must not stop the stage"
    assert await run.finish() is None
    assert (poison.partition, poison.offset) in harness.dead_lettered(env)
    good = [r for log in env.kafka.logs.values() for r in log if r is not poison]
    assert all(harness.written(env, r) for r in good), "records after the poison are written"
    assert run.violations == []


async def test_failed_write_commits_nothing(
    harness: StageHarness, settings: Settings, tmp_path: Path
) -> None:
    run = start(harness, settings, tmp_path, FAST)
    harness.fail_writes(run.env)
    (consumer,) = run.env.clients.consumers
    await run.until(lambda: run.task.done() or consumer.empty_polls > 0)
    await asyncio.sleep(0.05)  # a few more polls and flush attempts
    await run.finish()
    assert run.env.kafka.commits == [], "a commit although the write failed"
    assert harness.dead_lettered(run.env) == set(), "a failed write dead-lettered good data"
