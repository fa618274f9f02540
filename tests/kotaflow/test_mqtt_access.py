"""How a client finds its broker access (``kotaflow/mqtt.py``) and its Kafka login
(``kotaflow/kafka.py``) from the settings and the local stack's state dir, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotaflow.kafka import KafkaAccessError, client_options, local_sasl_password_file
from kotaflow.mqtt import (
    Account,
    MqttAccessError,
    credentials_json,
    local_ca_file,
    local_credentials_file,
    mqtt_access,
)
from kotaflow.secretfiles import write_private
from kotaflow.settings import Settings, SettingsError, load_settings


def _settings(state: Path, **sections: object) -> Settings:
    return Settings(stack={"state_dir": state}, **sections)  # type: ignore[arg-type]


def _stack_credentials(state: Path) -> None:
    write_private(
        local_credentials_file(state),
        credentials_json({Account.BRIDGE: "bridge-pw-1", "rtg-aq-01": "device-pw-1"}),
    )


def test_without_credentials_anywhere_the_client_is_anonymous(tmp_path: Path) -> None:
    access = mqtt_access(_settings(tmp_path), Account.BRIDGE)
    assert access.login is None
    assert (access.port, access.tls) == (1883, False)


def test_each_account_gets_its_password_from_the_stacks_file(tmp_path: Path) -> None:
    _stack_credentials(tmp_path)
    bridge = mqtt_access(_settings(tmp_path), Account.BRIDGE)
    device = mqtt_access(_settings(tmp_path), "rtg-aq-01")
    assert bridge.login is not None
    assert bridge.login.username == "kotaflow-bridge"
    assert bridge.login.password is not None
    assert bridge.login.password.get_secret_value() == "bridge-pw-1"
    assert device.username == "rtg-aq-01"
    with pytest.raises(MqttAccessError, match="no MQTT account 'rtg-xx-99'"):
        mqtt_access(_settings(tmp_path), "rtg-xx-99")


def test_a_username_in_the_settings_wins_for_every_account(tmp_path: Path) -> None:
    _stack_credentials(tmp_path)
    settings = _settings(tmp_path, mqtt={"username": "svc", "password": "svc-pw-1"})
    for account in (Account.BRIDGE, "rtg-aq-01"):
        assert mqtt_access(settings, account).username == "svc"


def test_an_explicit_credentials_file_must_exist(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mqtt={"credentials_file": tmp_path / "missing.json"})
    with pytest.raises(MqttAccessError, match=r"missing\.json"):
        mqtt_access(settings, Account.BRIDGE)


def test_tls_uses_its_own_port_and_the_stacks_ca_when_none_is_named(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mqtt={"tls": True, "tls_port": 18883})
    assert mqtt_access(settings, Account.BRIDGE).ca_file is None  # system store
    write_private(local_ca_file(tmp_path), "pem")
    access = mqtt_access(settings, Account.BRIDGE)
    assert (access.port, access.ca_file) == (18883, local_ca_file(tmp_path))
    named = _settings(tmp_path, mqtt={"tls": True, "ca_file": tmp_path / "mine.crt"})
    assert mqtt_access(named, Account.BRIDGE).ca_file == tmp_path / "mine.crt"


def test_kafka_sasl_password_comes_from_env_then_file_then_the_stack(tmp_path: Path) -> None:
    scram = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"}
    with pytest.raises(KafkaAccessError, match=r"sasl\.password"):
        client_options(_settings(tmp_path, kafka=scram))
    write_private(local_sasl_password_file(tmp_path), "stack-pw-1\n")
    options = client_options(_settings(tmp_path, kafka=scram))
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "kotaflow",
        "stack-pw-1",
    )
    write_private(tmp_path / "pw", "file-pw-1\n")
    from_file = _settings(tmp_path, kafka={**scram, "sasl_password_file": tmp_path / "pw"})
    assert client_options(from_file)["sasl_plain_password"] == "file-pw-1"
    from_env = _settings(tmp_path, kafka={**scram, "sasl_password": "env-pw-1"})
    assert client_options(from_env)["sasl_plain_password"] == "env-pw-1"
    assert "sasl_mechanism" not in client_options(_settings(tmp_path))


def test_a_settings_error_never_quotes_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTAFLOW_KAFKA__SASL_MECHANISM", "NOPE")
    monkeypatch.setenv("KOTAFLOW_KAFKA__SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("KOTAFLOW_MQTT", '{"port": 0, "password": "hunter3-secret"}')
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert 'KOTAFLOW_KAFKA__SASL_MECHANISM="NOPE"' in str(err.value)
    assert "KOTAFLOW_MQTT=*** (not shown)" in str(err.value)
    assert "hunter3-secret" not in str(err.value)
