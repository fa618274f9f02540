"""The two verbs: :func:`backup` into a new directory, :func:`restore` from one.

Restore is careful in this order: check every file against the manifest, then look at every
target and refuse (listing each one) if any holds something a restore would replace, then
InfluxDB, the alerting state, the state files and the settings files. A replaced file is
kept beside itself as ``<name>.before-restore``. InfluxDB is counted before and after: the
restored server must hold at least the values the backup counted when it began.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from deploy.backup import influx
from deploy.backup.contents import (
    ALERT_STATE,
    CONFIG,
    STATE,
    alert_state_path,
    backup_sqlite,
    config_files,
    restore_sqlite,
    sqlite_rows,
    state_files,
)
from deploy.backup.manifest import BackupError, Entry, Manifest, sha256_of, verify
from deploy.local.influxdb import OPERATOR, token_file
from deploy.local.service import Report
from kotaflow.secretfiles import write_private
from kotaflow.settings import Settings

PACKAGED = "packaged"
"""Manifest kind of a settings file shipped inside kotaflow (the sample registry, say)."""

ASIDE_SUFFIX = ".before-restore"


def operator_token(settings: Settings, token_path: Path | None) -> str:
    """The all-access token the backup API requires: a file, else the local stack's."""
    path = token_path or token_file(settings.stack.state_dir, OPERATOR)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise BackupError(
            f"no InfluxDB operator token: cannot read {path} ({err.strerror}); "
            "pass --influx-token-file with the server's all-access token"
        ) from None
    if not token:
        raise BackupError(f"{path} is empty: it should hold the InfluxDB operator token")
    return token


def backup(
    settings: Settings,
    config_file: Path | None,
    root: Path,
    report: Report,
    token_path: Path | None,
) -> Manifest:
    if root.exists() and any(root.iterdir()):
        raise BackupError(f"{root} is not empty: back up into a new directory")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # tokens, passwords and the CA key are in here
    started = time.monotonic()
    manifest = Manifest(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        versions={
            "kotaflow": version("kotaflow"),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
        },
        source={
            "host": platform.node(),
            "influxdb_url": settings.influxdb.url,
            "state_dir": str(settings.stack.state_dir),
        },
    )
    with influx.client(settings.influxdb.url, operator_token(settings, token_path)) as http:
        manifest.versions["influxdb"] = influx.server_version(http)
        manifest.influxdb_buckets = _counted(http, report)
        for saved in influx.backup_server(http, root / "influxdb", report):
            manifest.add(root, saved.path, saved.kind, saved.target)
    _backup_alert_state(settings, root, manifest, report)
    _backup_files(settings, config_file, root, manifest, report)
    for entry in manifest.entries:
        os.chmod(root / entry.path, 0o600)
    manifest.save(root)
    report(
        f"backup done: {len(manifest.entries)} files, {_mb(manifest.total_bytes())} in {root} "
        f"({time.monotonic() - started:.1f}s); manifest {root / 'manifest.json'}"
    )
    return manifest


def restore(
    settings: Settings,
    root: Path,
    report: Report,
    *,
    force: bool,
    files_dir: Path | None,
    token_path: Path | None,
) -> float:
    """Restore everything in the backup at ``root``; the seconds it took."""
    started = time.monotonic()
    manifest = Manifest.load(root)
    report(
        f"checking {len(manifest.entries)} files ({_mb(manifest.total_bytes())}) of the "
        f"backup made {manifest.created} on {manifest.source.get('host', '?')}"
    )
    problems = verify(root, manifest)
    if problems:
        raise BackupError(
            "the backup is damaged; nothing was restored:\n  " + "\n  ".join(problems)
        )
    report("all checksums match the manifest")
    has_influx = bool(manifest.of_kind(influx.KV))
    token = operator_token(settings, token_path) if has_influx else ""
    conflicts = _conflicts(settings, root, manifest, token, files_dir)
    if conflicts and not force:
        raise BackupError(
            "refusing to overwrite what the targets already hold:\n  "
            + "\n  ".join(conflicts)
            + f"\nRerun with --force to replace them (files are kept as *{ASIDE_SUFFIX})."
        )
    for conflict in conflicts:
        report(f"replacing (--force): {conflict}")
    if has_influx:
        _restore_influx(settings, root, manifest, token, report)
    for entry in manifest.of_kind(ALERT_STATE):
        target = alert_state_path(settings)
        restore_sqlite(root / entry.path, target)
        report(f"alerting state restored to {target} ({sqlite_rows(target)} rows)")
    for entry in manifest.entries:
        if entry.kind in (STATE, CONFIG, PACKAGED):
            _restore_file(root, entry, _file_target(settings, entry, files_dir), report)
    seconds = time.monotonic() - started
    report(
        f"restore done in {seconds:.1f}s. Run `kotaflow stack up` (or restart the services) "
        "so Mosquitto, Kafka and the kotaflow processes read the restored credentials."
    )
    return seconds


def _counted(http: Any, report: Report) -> list[dict[str, Any]]:
    counted = []
    for bucket in influx.user_buckets(http):
        values = influx.value_counts(http, bucket["org_id"], bucket["name"])
        report(f"influxdb: bucket {bucket['name']} holds {sum(values.values())} values")
        counted.append({**bucket, "values": values})
    return counted


def _backup_alert_state(settings: Settings, root: Path, manifest: Manifest, report: Report) -> None:
    source = alert_state_path(settings)
    if not source.is_file():
        manifest.notes.append(f"no alerting state at {source}")
        report(f"alerting: no state at {source} (the alert stage has not run): skipped")
        return
    target = root / "alerting" / source.name
    backup_sqlite(source, target)
    manifest.add(root, target, ALERT_STATE, source.name)
    report(f"alerting: state copied with SQLite's online backup ({sqlite_rows(target)} rows)")


def _backup_files(
    settings: Settings, config_file: Path | None, root: Path, manifest: Manifest, report: Report
) -> None:
    state_dir = settings.stack.state_dir
    for path in state_files(state_dir):
        relative = path.relative_to(state_dir)
        copy = root / "state" / relative
        write_private(copy, path.read_bytes())
        manifest.add(root, copy, STATE, relative.as_posix())
    report(f"state: {len(manifest.of_kind(STATE))} credential files from {state_dir}")
    package = Path(__file__).resolve().parents[2]
    for found in config_files(settings, config_file):
        copy = root / "config" / f"{found.role}-{found.path.name}"
        write_private(copy, found.path.read_bytes())
        kind = PACKAGED if found.path.is_relative_to(package) else CONFIG
        manifest.add(root, copy, kind, str(found.path))
        report(f"config: {found.role} {found.path}{' (packaged)' if kind == PACKAGED else ''}")


def _conflicts(
    settings: Settings, root: Path, manifest: Manifest, token: str, files_dir: Path | None
) -> list[str]:
    conflicts = []
    if token:
        with influx.client(settings.influxdb.url, token) as http:
            influx.server_version(http)
            for bucket in influx.user_buckets(http):
                values = sum(influx.value_counts(http, bucket["org_id"], bucket["name"]).values())
                if values:
                    conflicts.append(
                        f"InfluxDB {settings.influxdb.url}: bucket {bucket['name']} holds "
                        f"{values} values (a full restore replaces every bucket)"
                    )
    if manifest.of_kind(ALERT_STATE):
        rows = sqlite_rows(alert_state_path(settings))
        if rows:
            conflicts.append(f"alerting state {alert_state_path(settings)} holds {rows} rows")
    for entry in manifest.entries:
        if entry.kind in (STATE, CONFIG):
            target = _file_target(settings, entry, files_dir)
            if target.is_file() and sha256_of(target) != entry.sha256:
                conflicts.append(f"{target} differs from the backup's copy")
    return conflicts


def _restore_influx(
    settings: Settings, root: Path, manifest: Manifest, token: str, report: Report
) -> None:
    started = time.monotonic()
    files: dict[str, list[tuple[Path, str]]] = {}
    for entry in manifest.entries:
        files.setdefault(entry.kind, []).append((root / entry.path, entry.target))
    with influx.client(settings.influxdb.url, token) as http:
        influx.restore_server(http, files, report)
        report(f"influxdb: restored in {time.monotonic() - started:.1f}s; counting values")
        short = []
        for bucket in manifest.influxdb_buckets:
            now = influx.value_counts(http, bucket["org_id"], bucket["name"])
            for measurement, before in bucket["values"].items():
                if now.get(measurement, 0) < before:
                    short.append(
                        f"{bucket['name']}/{measurement}: {now.get(measurement, 0)} < {before}"
                    )
            report(
                f"influxdb: bucket {bucket['name']}: {sum(now.values())} values "
                f"(backup counted {sum(bucket['values'].values())})"
            )
    if short:
        raise BackupError(
            "influxdb: the restored server holds fewer values:\n  " + "\n  ".join(short)
        )


def _file_target(settings: Settings, entry: Entry, files_dir: Path | None) -> Path:
    if entry.kind == STATE:
        return settings.stack.state_dir / entry.target
    original = Path(entry.target)
    return files_dir / original.name if files_dir else original


def _restore_file(root: Path, entry: Entry, target: Path, report: Report) -> None:
    if target.is_file() and sha256_of(target) == entry.sha256:
        report(f"in place: {target}")
        return
    if entry.kind == PACKAGED and target == Path(entry.target):
        report(
            f"note: the packaged {target} differs from the backup's copy (another kotaflow "
            f"version?); the backup's is {root / entry.path}: name it in the settings to use it"
        )
        return
    if target.is_file():
        os.replace(target, target.with_name(target.name + ASIDE_SUFFIX))
    write_private(target, (root / entry.path).read_bytes())
    report(f"restored {target}")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
