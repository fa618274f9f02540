"""Which InfluxDB token each stage picks (pure: files in a temporary directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from kotaflow.settings import Settings
from processors.runtime.influx import (
    AGGREGATE_ROLE,
    READ_ROLE,
    STORE_ROLE,
    WRITE_ROLE,
    InfluxConfigError,
    resolve_token,
)


def stack_with(tmp_path: Path, tokens: dict[str, str]) -> Settings:
    folder = tmp_path / "influxdb"
    folder.mkdir()
    (folder / "tokens.json").write_text(json.dumps({"tokens": tokens}), encoding="utf-8")
    return Settings(stack={"state_dir": tmp_path})  # type: ignore[arg-type]


def test_each_stage_picks_its_own_token_from_the_local_stack(tmp_path: Path) -> None:
    s = stack_with(tmp_path, {"store": "S", "aggregate": "A", "pipeline": "P", "grafana": "G"})
    assert resolve_token(s, STORE_ROLE, WRITE_ROLE) == "S"
    assert resolve_token(s, AGGREGATE_ROLE, READ_ROLE) == "A"


def test_a_stack_set_up_before_per_stage_tokens_falls_back_to_the_shared_ones(
    tmp_path: Path,
) -> None:
    s = stack_with(tmp_path, {"pipeline": "P", "grafana": "G"})
    assert resolve_token(s, AGGREGATE_ROLE, WRITE_ROLE) == "P"
    assert resolve_token(s, AGGREGATE_ROLE, READ_ROLE) == "G"
    with pytest.raises(InfluxConfigError, match="'store'"):
        resolve_token(s, STORE_ROLE)


def test_a_token_directory_holds_one_file_per_role(tmp_path: Path) -> None:
    (tmp_path / "store.token").write_text("S\n", encoding="utf-8")
    (tmp_path / "pipeline.token").write_text("P\n", encoding="utf-8")
    s = Settings(processing={"influx_token_dir": tmp_path})  # type: ignore[arg-type]
    assert resolve_token(s, STORE_ROLE, WRITE_ROLE) == "S"
    assert resolve_token(s, AGGREGATE_ROLE, WRITE_ROLE) == "P"
    with pytest.raises(InfluxConfigError, match=r"no aggregate\.token or grafana\.token"):
        resolve_token(s, AGGREGATE_ROLE, READ_ROLE)


def test_one_configured_token_or_token_file_still_serves_every_stage(tmp_path: Path) -> None:
    one = Settings(influxdb={"token": SecretStr("T")})  # type: ignore[arg-type]
    assert resolve_token(one, STORE_ROLE, WRITE_ROLE) == "T"
    (tmp_path / "pipeline.token").write_text("P\n", encoding="utf-8")
    old = Settings(processing={"influx_token_file": tmp_path / "pipeline.token"})  # type: ignore[arg-type]
    assert resolve_token(old, AGGREGATE_ROLE, READ_ROLE) == "P"
