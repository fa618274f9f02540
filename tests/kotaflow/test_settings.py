from __future__ import annotations

from pathlib import Path

import pytest

from kotaflow.settings import SettingsError, load_settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOTAFLOW_CONFIG", raising=False)
    s = load_settings()
    assert (s.mqtt.host, s.mqtt.port) == ("127.0.0.1", 1883)
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.influxdb.url == "http://127.0.0.1:8086"
    assert s.kafka.topics.model_dump() == {
        "raw": "kotaflow.raw",
        "readings": "kotaflow.readings",
        "deadletter": "kotaflow.deadletter",
        "alerts": "kotaflow.alerts",
        "bridge_lease": "kotaflow.bridge-lease",
    }
    assert s.bridge.share_group is None  # deprecated: plain subscriptions (ingest/mqtt.py)
    assert s.bridge.rate_burst is None  # sized from the catalogue (ingest/ratelimit.py)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "k.yaml"
    config.write_text(
        "mqtt:\n  port: 1884\nkafka:\n  topics:\n    raw: city.raw\n", encoding="utf-8"
    )
    monkeypatch.setenv("KOTAFLOW_MQTT__PORT", "1885")
    s = load_settings(config)
    assert s.mqtt.port == 1885
    assert s.kafka.topics.raw == "city.raw"


def test_an_empty_environment_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "k.yaml"
    config.write_text(f"registry_file: {tmp_path / 'registry.yaml'}\nmqtt:\n  port: 1884\n")
    monkeypatch.setenv("KOTAFLOW_REGISTRY_FILE", "")
    monkeypatch.setenv("KOTAFLOW_MQTT__PORT", "")
    s = load_settings(config)
    assert s.registry_file == tmp_path / "registry.yaml"  # not Path(".")
    assert s.mqtt.port == 1884
    monkeypatch.delenv("KOTAFLOW_CONFIG", raising=False)
    assert load_settings().registry_file is None


def test_bad_env_value_names_field_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTAFLOW_MQTT__PORT", "70000")
    with pytest.raises(
        SettingsError, match=r"mqtt\.port: .*environment variable KOTAFLOW_MQTT__PORT"
    ):
        load_settings()


def test_bad_file_value_names_field_and_file(tmp_path: Path) -> None:
    config = tmp_path / "k.yaml"
    config.write_text("kafka:\n  bootstrap_servers: nohost\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=rf"kafka\.bootstrap_servers: .*config file {config}"):
        load_settings(config)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "k.yaml"
    config.write_text("mqtt:\n  hots: example\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"mqtt\.hots: Extra inputs"):
        load_settings(config)


def test_missing_and_malformed_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("mqtt: [unclosed\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(broken)


def test_cli_reports_bad_settings_with_exit_code_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kotaflow.cli import app

    monkeypatch.setenv("KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS", "broken")
    result = CliRunner().invoke(app, ["stack", "status"])
    assert result.exit_code == 2
    assert "kafka.bootstrap_servers" in result.output
