"""The live view of ``kotaflow run``: figures from the parts' Prometheus samples, logs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kotaflow import run
from kotaflow.run import copy_to_log, figures_of, notification_text
from kotaflow.settings import Settings


def test_figures_come_from_each_parts_samples() -> None:
    scraped = {
        "bridge": {
            "kotaflow_bridge_received_total": 40.0,
            "kotaflow_bridge_deadlettered_total{reason=rate_limited}": 3.0,
            "kotaflow_bridge_deadlettered_total{reason=oversize}": 0.0,
        },
        "process": {
            "kotaflow_records_out_total{stage=validate}": 200.0,
            "kotaflow_records_out_total{stage=store}": 190.0,
            "kotaflow_write_seconds_count{stage=store}": 7.0,
            "kotaflow_deadletter_total{reason=not_json,stage=validate}": 2.0,
            "kotaflow_consumer_lag{partition=0,stage=store}": 5.0,
            "kotaflow_consumer_lag{partition=1,stage=store}": 6.0,
        },
        "alert": None,
    }
    figures = figures_of(scraped)
    assert figures.totals["messages received (bridge)"] == 40
    assert figures.totals["readings validated"] == 200
    assert figures.totals["points stored"] == 190
    assert figures.totals["InfluxDB writes"] == 7
    assert figures.deadletters == {"bridge/rate_limited": 3, "validate/not_json": 2}
    assert figures.lag == {"store": 11}


def test_notification_line_names_rule_device_and_level() -> None:
    event = {"change": "fired", "rule": "flood", "device": "d1", "level": "Siaga", "at_ms": 0}
    text = notification_text(json.dumps(event).encode())
    assert "fired flood@d1 Siaga" in text
    assert notification_text(b"not json") == "(unreadable event)"


def test_part_logs_rotate_by_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "LOG_MAX_BYTES", 1000)
    path = tmp_path / "bridge.log"
    copy_to_log(io.BytesIO(b"".join(b"line %04d of output\n" % i for i in range(500))), path)
    assert path.stat().st_size <= 1000
    backups = sorted(tmp_path.glob("bridge.log.*"))
    assert [p.name for p in backups] == [f"bridge.log.{i}" for i in range(1, run.LOG_BACKUPS + 1)]
    assert path.read_text(encoding="utf-8").splitlines()[-1] == "line 0499 of output"


def test_notification_value_is_short() -> None:
    event = {"change": "fired", "rule": "r", "device": "d", "level": "L", "value": 37.500000000001}
    assert notification_text(json.dumps(event).encode()).endswith("r@d L 37.5")


def test_sigterm_stops_the_parts_like_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kill``/``timeout``/systemd send SIGTERM: the parts must not outlive ``kotaflow run``."""
    started: list[subprocess.Popen[bytes]] = []

    def start(part: run.Part, config: Path | None, log_dir: Path) -> None:
        part.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(part.proc)

    async def watch(settings: Settings, parts: list[run.Part], duration: float | None) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)

    monkeypatch.setattr(run, "start", start)
    monkeypatch.setattr(run, "watch", watch)
    before = signal.getsignal(signal.SIGTERM)
    settings = Settings(stack={"state_dir": tmp_path})
    run.run_pipeline(settings, {"bridge", "simulate"}, None, 1.0, "", None)

    assert len(started) == 2
    assert all(proc.poll() is not None for proc in started)
    out = capsys.readouterr().out
    assert "stopping simulate, bridge" in out
    assert "pipeline stopped" in out
    assert signal.getsignal(signal.SIGTERM) == before


def test_topic_records_count_from_the_start_of_the_view() -> None:
    first = {"kotaflow.raw": 30_000, "kotaflow.deadletter": 200_000}
    now = {"kotaflow.raw": 30_360, "kotaflow.deadletter": 200_004}
    assert run.records_since(first, now, ["kotaflow.raw", "kotaflow.deadletter"]) == {
        "records on kotaflow.raw": 360,
        "records on kotaflow.deadletter": 4,
    }
