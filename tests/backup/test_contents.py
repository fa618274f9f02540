"""What a backup takes besides InfluxDB: pure file choices and the SQLite copy (no services)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from deploy.backup.contents import backup_sqlite, config_files, sqlite_rows, state_files
from kotaflow.cli import app
from kotaflow.settings import MqttSettings, Settings, StackSettings


def test_broker_accounts_kept_outside_the_state_dir_are_backed_up(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "mosquitto" / "kotaflow"
    etc.mkdir(parents=True)
    for name in ("credentials.json", "passwd", "acl"):
        (etc / name).write_text(name, encoding="utf-8")
    settings = Settings(
        stack=StackSettings(state_dir=tmp_path / "state"),
        mqtt=MqttSettings(credentials_file=etc / "credentials.json"),
    )
    roles = {f.role: f.path for f in config_files(settings, None)}
    assert roles["mqtt-credentials"] == etc / "credentials.json"
    assert roles["mqtt-passwd"] == etc / "passwd"
    assert roles["mqtt-acl"] == etc / "acl"
    assert {"registry", "catalogue", "alert-rules"} <= set(roles)


def test_the_brokers_ca_key_and_certificate_kept_outside_the_state_dir_are_backed_up(
    tmp_path: Path,
) -> None:
    made = CliRunner().invoke(
        app, ["devices", "tls", str(tmp_path / "etc" / "tls"), "--host", "mqtt"]
    )
    assert made.exit_code == 0, made.output
    tls = tmp_path / "etc" / "tls"
    settings = Settings(
        stack=StackSettings(state_dir=tmp_path / "state"),
        mqtt=MqttSettings(ca_file=tls / "ca.crt"),
    )
    roles = {f.role: f.path for f in config_files(settings, None)}
    assert roles["mqtt-ca"] == tls / "ca.crt"
    assert roles["mqtt-ca-key"] == tls / "ca.key"
    assert roles["mqtt-server-cert"] == tls / "server.crt"
    assert roles["mqtt-server-key"] == tls / "server.key"


def test_state_files_are_the_credentials_not_the_data(tmp_path: Path) -> None:
    for name in ("mosquitto/passwd", "influxdb/operator.token", "tls/ca.key", "kafka/cluster-id"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    (tmp_path / "influxdb" / "data").mkdir()
    (tmp_path / "influxdb" / "data" / "influxd.bolt").write_text("x", encoding="utf-8")
    found = {p.relative_to(tmp_path).as_posix() for p in state_files(tmp_path)}
    assert found == {"mosquitto/passwd", "influxdb/operator.token", "tls/ca.key"}


def test_a_live_wal_database_is_copied_with_its_uncheckpointed_rows(tmp_path: Path) -> None:
    live = sqlite3.connect(tmp_path / "alerting.sqlite3", isolation_level=None)
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")  # the rows stay in the -wal file
    live.execute("CREATE TABLE states (k TEXT PRIMARY KEY, v TEXT)")
    live.executemany("INSERT INTO states VALUES (?, ?)", [(str(i), "x" * 50) for i in range(500)])
    copy = tmp_path / "backup" / "alerting.sqlite3"

    backup_sqlite(tmp_path / "alerting.sqlite3", copy)
    live.close()

    assert sqlite_rows(copy) == 500
    assert not copy.with_name(copy.name + "-wal").exists()  # one self-contained file


def test_restore_command_stops_at_a_damaged_backup_before_any_service(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deploy.backup.manifest import Manifest
    from kotaflow.cli import app

    backup = tmp_path / "backup"
    (backup / "state" / "mosquitto").mkdir(parents=True)
    passwd = backup / "state" / "mosquitto" / "passwd"
    passwd.write_text("dev:hash\n", encoding="utf-8")
    manifest = Manifest(created="2026-12-04T00:00:00+00:00", versions={}, source={})
    manifest.add(backup, passwd, "state", "mosquitto/passwd")
    manifest.save(backup)
    passwd.write_text("dev:hasx\n", encoding="utf-8")  # same size, other bytes

    result = CliRunner().invoke(app, ["restore", str(backup)])

    assert result.exit_code == 1
    assert "SHA-256 differs" in result.output
    assert "nothing was restored" in result.output
