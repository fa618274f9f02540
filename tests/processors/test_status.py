"""Judging the pipeline's parts from what they expose (pure parts of processors.status)."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka import TopicPartition

from kotaflow.settings import Settings
from processors.status import _blocked, _stage, lag_of, status_file_blocks


def test_a_group_without_members_is_a_stopped_stage() -> None:
    part = _stage("validate", "stage", "g", ("Empty", 0, 12), None, [])
    assert (part.healthy, part.state, part.lag) == (False, "stopped", 12)


def test_a_stable_group_with_members_is_alive() -> None:
    part = _stage("store", "stage", "g", ("Stable", 1, 0), 1_764_000_000_000, [])
    assert (part.healthy, part.state) == (True, "alive")
    assert part.last_write is not None


def test_a_blocked_write_makes_a_live_stage_unhealthy() -> None:
    samples = {
        "kotaflow_write_blocked{reason=disk_full,stage=store}": 1.0,
        "kotaflow_write_blocked{reason=auth,stage=aggregate}": 0.0,
        "kotaflow_records_in_total{stage=store}": 5.0,
    }
    blocked = _blocked(samples)
    assert blocked == {"store": ["disk_full"]}
    part = _stage("store", "stage", "g", ("Stable", 1, 0), None, blocked["store"])
    assert (part.healthy, part.state) == (False, "blocked")


def test_a_fresh_status_file_reports_a_blocked_stage(tmp_path: Path) -> None:
    settings = Settings(stack={"state_dir": tmp_path})
    folder = tmp_path / "processors"
    folder.mkdir()
    stages = {
        "store": {"write_blocked": {"reason": "auth", "since_ms": 1, "fix": "token"}},
        "validate": {"write_blocked": None},
    }
    (folder / "a.status.json").write_text(
        json.dumps({"at_ms": 90_000, "stages": stages}), encoding="utf-8"
    )
    (folder / "old.status.json").write_text(
        json.dumps({"at_ms": 0, "stages": {"aggregate": stages["store"]}}), encoding="utf-8"
    )
    assert status_file_blocks(settings, now_ms=100_000) == {"store": ["auth"]}


def test_lag_counts_from_the_oldest_kept_record_without_a_commit() -> None:
    """A partition the group never committed, or whose commit retention has passed, lags
    by what Kafka still keeps, not by its whole end offset."""
    p0, p1, p2 = (TopicPartition("t", p) for p in range(3))
    ends = {p0: 1000, p1: 1000, p2: 1000}
    begins = {p0: 900, p1: 900, p2: 0}
    committed = {p0: 950, p1: 10}  # p1's commit is older than the oldest kept record
    assert lag_of(ends, begins, committed) == 50 + 100 + 1000
