"""``kotaflow edge status`` reads the queue file (no services)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.queue import EdgeQueue, Incoming


def test_status_reports_the_queue_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kotaflow.cli import app

    path = tmp_path / "q.db"
    q = EdgeQueue(path, 1 << 20)
    q.append([Incoming("kotaflow/a/telemetry", b"{}", 1, False, 1_000) for _ in range(3)])
    q.close()
    monkeypatch.setenv("KOTAFLOW_EDGE__QUEUE_FILE", str(path))
    result = CliRunner().invoke(app, ["edge", "status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["messages"], report["level"], report["refused"]) == (3, "ok", 0)
    assert report["bytes"] == 3 * Incoming("kotaflow/a/telemetry", b"{}", 1, False, 0).size()


def test_status_without_a_queue_file_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kotaflow.cli import app

    monkeypatch.setenv("KOTAFLOW_EDGE__QUEUE_FILE", str(tmp_path / "none.db"))
    result = CliRunner().invoke(app, ["edge", "status"])
    assert result.exit_code == 1
    assert "none.db" in result.output
