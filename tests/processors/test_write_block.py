"""Which InfluxDB answers are about the data, and how a stalled stage reports (no services)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from kotaflow.settings import Settings
from processors.runtime.health import Health
from processors.runtime.stage_loop import instance_name
from processors.runtime.status_file import StatusFile, read_statuses, remove_dead, status_path
from processors.runtime.write_block import (
    REPORT_EVERY_S,
    BlockLog,
    BlockReason,
    Target,
    Verdict,
    block_reason,
    fix_hint,
    judge,
)

PARSE = "unable to parse 'm,t=a v= 1796407592265': missing field value"
PARTIAL = "failure writing points to database: partial write: field type conflict dropped=1"


@pytest.mark.parametrize(
    ("status", "message", "lines", "verdict"),
    [
        (400, PARSE, 10, Verdict.REFUSED),
        (422, PARTIAL, 1, Verdict.REFUSED),
        (413, "request too large", 10, Verdict.SPLIT),
        (413, "request too large", 1, Verdict.BLOCKED),
        (
            400,
            "invalid precision; valid precision units are ns, us, ms, and s",
            10,
            Verdict.BLOCKED,
        ),
        (401, "unauthorized access", 10, Verdict.BLOCKED),
        (403, "insufficient permissions for write", 10, Verdict.BLOCKED),
        (404, 'bucket "telemetry" not found', 10, Verdict.BLOCKED),
        (404, 'organization name "kotaflow" not found', 10, Verdict.BLOCKED),
        (429, "", 10, Verdict.BLOCKED),
        (500, "internal error", 10, Verdict.BLOCKED),
        (503, "", 10, Verdict.BLOCKED),
        (None, "ClientConnectorError: connection refused", 10, Verdict.BLOCKED),
    ],
)
def test_only_answers_naming_lines_are_about_the_data(
    status: int | None, message: str, lines: int, verdict: Verdict
) -> None:
    assert judge(status, message, lines) is verdict


@pytest.mark.parametrize(
    ("status", "message", "timed_out", "reason"),
    [
        (401, "unauthorized access", False, BlockReason.UNAUTHORIZED),
        (403, "insufficient permissions for write", False, BlockReason.FORBIDDEN),
        (404, 'bucket "x" not found', False, BlockReason.BUCKET_NOT_FOUND),
        (404, 'organization name "x" not found', False, BlockReason.ORG_NOT_FOUND),
        (413, "too large", False, BlockReason.TOO_LARGE),
        (429, "", False, BlockReason.OVERLOADED),
        (502, "", False, BlockReason.SERVER_ERROR),
        (400, "invalid precision", False, BlockReason.BAD_REQUEST),
        (None, "TimeoutError", True, BlockReason.TIMEOUT),
        (None, "ClientConnectorError", False, BlockReason.UNREACHABLE),
    ],
)
def test_block_reasons(
    status: int | None, message: str, timed_out: bool, reason: BlockReason
) -> None:
    assert block_reason(status, message, timed_out) is reason


TARGET = Target(
    url="http://127.0.0.1:8086",
    org="kotaflow",
    bucket="telemetry",
    token="the pipeline token from file /run/secrets/influx.token (processing.influx_token_file)",
    token_rereadable=True,
)


def test_hints_name_what_to_fix() -> None:
    unauthorized = fix_hint(BlockReason.UNAUTHORIZED, TARGET)
    assert "/run/secrets/influx.token" in unauthorized
    assert "read again on every retry" in unauthorized
    assert "'telemetry'" in fix_hint(BlockReason.BUCKET_NOT_FOUND, TARGET)
    assert "re-created" in fix_hint(BlockReason.FORBIDDEN, TARGET)
    assert TARGET.url in fix_hint(BlockReason.UNREACHABLE, TARGET)
    fixed = Target(TARGET.url, TARGET.org, None, "the pipeline token from setting", False)
    assert "restart" in fix_hint(BlockReason.UNAUTHORIZED, fixed)


def test_a_stall_logs_once_a_minute_sets_the_gauge_and_clears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    health = Health("test")
    blocks = BlockLog(health, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "kotaflow.processors.influx")
    for _ in range(100):  # 100 retries within one minute: one line
        blocks.blocked("store", BlockReason.UNAUTHORIZED, "401 unauthorized access", TARGET)
        now[0] += 0.5
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "/run/secrets/influx.token" in caplog.records[0].getMessage()
    now[0] += REPORT_EVERY_S
    blocks.blocked("store", BlockReason.UNAUTHORIZED, "401 unauthorized access", TARGET)
    assert len(caplog.records) == 2
    assert caplog.records[1].attempts == 101  # type: ignore[attr-defined]
    assert health.blocked("store") == "unauthorized"
    sample = health.registry.get_sample_value
    assert sample("kotaflow_write_blocked", {"stage": "store", "reason": "unauthorized"}) == 1
    status = health.status()["stages"]["store"]["write_blocked"]
    assert status["reason"] == "unauthorized"
    assert "/run/secrets/influx.token" in status["fix"]
    assert any("write_blocked=1i" in line for line in health.lines("kotaflow_pipeline", 1))

    blocks.cleared("store")
    assert health.blocked("store") is None
    assert sample("kotaflow_write_blocked", {"stage": "store", "reason": "unauthorized"}) == 0
    assert health.status()["stages"]["store"]["write_blocked"] is None
    assert "resumed" in caplog.records[-1].getMessage()
    blocks.cleared("store")  # nothing blocked: silent
    assert len(caplog.records) == 3


def test_the_status_file_is_written_replaced_and_removed_and_dead_ones_pruned(
    tmp_path: Path,
) -> None:
    settings = Settings(stack={"state_dir": tmp_path})  # type: ignore[arg-type]
    health = Health(instance_name())
    status = StatusFile(status_path(settings, health.instance), health)
    health.on_status_change.append(status.write)
    health.write_blocked("store", "unauthorized", "put a valid token in /x")
    [found] = read_statuses(settings)
    assert found["pid"] == os.getpid()
    assert found["stages"]["store"]["write_blocked"]["reason"] == "unauthorized"  # type: ignore[index]
    health.write_blocked("store", None)
    [found] = read_statuses(settings)
    assert found["stages"]["store"]["write_blocked"] is None  # type: ignore[index]
    dead = status_path(settings, f"{socket.gethostname()}-999999999")
    dead.write_text("{}", encoding="utf-8")
    remove_dead(settings)
    assert not dead.exists()
    assert status.path.exists()  # this process is alive
    status.remove()
    assert read_statuses(settings) == []
