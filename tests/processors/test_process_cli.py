"""``kotaflow process``: an operator's mistake at start is an error line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


def test_a_missing_registry_file_is_named_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kotaflow.cli import app

    missing = tmp_path / "no-such-registry.yaml"
    monkeypatch.setenv("KOTAFLOW_REGISTRY_FILE", str(missing))
    monkeypatch.setenv("KOTAFLOW_METRICS_PORT", "0")
    monkeypatch.setenv("KOTAFLOW_STACK__STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["process", "--stage", "validate"])
    assert result.exit_code == 2, result.output
    assert f"error: {missing}:1: (file): cannot read" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
