"""Which files a backup holds besides InfluxDB, and how each is copied safely.

State files are named relative to ``stack.state_dir`` so they restore into another host's
(or another test's) state directory. Settings files are restored to the path they were read
from, or into ``--files-dir``. The alerting state is SQLite in WAL mode, written while
``kotaflow alert`` runs: copying the file could catch half a transaction, so both directions
go through SQLite's online backup API, which copies a consistent snapshot.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from deploy.local.tls import TlsFiles
from devices.catalogue import PACKAGED_CATALOGUE
from devices.credentials import ACL_FILE, PASSWD_FILE
from devices.registry import PACKAGED_REGISTRY
from kotaflow.settings import Settings

ALERT_STATE, STATE, CONFIG = "alert-state", "state", "config"
"""Manifest kinds of the files this module handles."""

STATE_PATTERNS = (
    f"mosquitto/{PASSWD_FILE}",
    f"mosquitto/{ACL_FILE}",
    "mosquitto/credentials.json",
    "influxdb/tokens.json",
    "influxdb/*.token",
    "kafka/sasl.password",
    "tls/*",
)
"""Credentials the stack generated once: device and service passwords, InfluxDB tokens (they
match the restored InfluxDB), the Kafka SCRAM password (``stack up`` re-applies it) and the
CA devices trust. Not ``kafka/cluster-id``: it belongs to Kafka's data, which is not kept."""


@dataclass(frozen=True)
class ConfigFile:
    role: str
    path: Path


def state_files(state_dir: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in STATE_PATTERNS:
        found.update(p for p in state_dir.glob(pattern) if p.is_file() and p.suffix != ".tmp")
    return sorted(found)


def config_files(settings: Settings, config_file: Path | None) -> list[ConfigFile]:
    """The settings file and the registry, catalogue and rule files in use (packaged or not)."""
    from processors.alerting.rules import rules_file_of

    files = [ConfigFile("settings", config_file)] if config_file else []
    files.append(ConfigFile("registry", settings.registry_file or PACKAGED_REGISTRY))
    files.append(ConfigFile("catalogue", settings.catalogue_file or PACKAGED_CATALOGUE))
    files.append(ConfigFile("alert-rules", rules_file_of(settings.alerting)))
    files += [f for f in _configured_secrets(settings) if f.path.is_file()]
    unique: dict[Path, ConfigFile] = {}
    for found in files:
        unique.setdefault(found.path.resolve(), ConfigFile(found.role, found.path.resolve()))
    return list(unique.values())


def _configured_secrets(settings: Settings) -> list[ConfigFile]:
    """Credentials a production host keeps outside the state directory (the VM guide puts
    the broker's accounts in /etc/mosquitto/kotaflow/), where the settings name them."""
    found = []
    if settings.mqtt.credentials_file:
        accounts = settings.mqtt.credentials_file
        found.append(ConfigFile("mqtt-credentials", accounts))
        found.append(ConfigFile("mqtt-passwd", accounts.with_name(PASSWD_FILE)))
        found.append(ConfigFile("mqtt-acl", accounts.with_name(ACL_FILE)))
    named = {
        "mqtt-ca": settings.mqtt.ca_file,
        "kafka-ca": settings.kafka.ca_file,
        "kafka-sasl-password": settings.kafka.sasl_password_file,
        "influx-token": settings.processing.influx_token_file,
    }
    found += [ConfigFile(role, path) for role, path in named.items() if path is not None]
    if settings.mqtt.ca_file is not None:
        # `kotaflow devices tls` keeps the CA key and the broker's pair beside the CA: without
        # the key a restored host would make a new CA, and every device would need it.
        layout = TlsFiles.of(Path())
        for role, name in (
            ("mqtt-ca-key", layout.ca_key.name),
            ("mqtt-server-cert", layout.server_cert.name),
            ("mqtt-server-key", layout.server_key.name),
        ):
            found.append(ConfigFile(role, settings.mqtt.ca_file.with_name(name)))
    return found


def alert_state_path(settings: Settings) -> Path:
    return settings.alerting.state_path(settings.stack.state_dir)


def backup_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database, checked before it counts as a backup."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        raise RuntimeError(f"the copy of {source} fails SQLite's integrity check: {check}")


def restore_sqlite(backup: Path, target: Path) -> None:
    """Replace ``target``'s content with the backup's, safely even if someone has it open."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(target, timeout=30.0)) as dst,
    ):
        src.backup(dst)


def sqlite_rows(path: Path) -> int:
    """Rows in all tables of a database (0 if it does not exist): is it worth keeping?"""
    if not path.is_file():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)) as db:
        tables = [
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(row[0]).startswith("sqlite_")
        ]
        return sum(int(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables)
