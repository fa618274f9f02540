"""``kotaflow backup`` -> ``kotaflow restore`` into an empty stack, against real InfluxDB servers.

Two private ``influxd`` (the local stack's cached binary, own ports and data dirs; the shared
stack is never touched): the source gets scratch readings spread over several days (so several
shards) plus fresh points still in its write cache, an alerting state held open by a live
``AlertStore``, broker credential files and a settings file. The target is set up empty, as
``kotaflow stack up`` leaves a new host. Restore must refuse to replace the target's own files
until told, then bring back every point, row and file.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.backup import run
from deploy.backup.contents import alert_state_path
from deploy.backup.influx import END_OF_TIME, query_rows
from deploy.backup.manifest import BackupError, Manifest, sha256_of
from deploy.local.influxdb import OPERATOR, VERSION, InfluxDB, load_access
from kotaflow.settings import InfluxSettings, Settings, StackSettings, default_cache_dir
from processors.alerting.silences import Silence
from processors.alerting.state_store import AlertStore

log = logging.getLogger("tests.backup")

pytestmark = pytest.mark.skipif(
    not (default_cache_dir() / "influxdb" / VERSION / "influxd").is_file(),
    reason="influxd is not built yet (kotaflow stack up builds it once)",
)

DAYS = 6
PER_DAY = 400


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _private_influx(state_dir: Path) -> Iterator[Settings]:
    settings = Settings(
        stack=StackSettings(state_dir=state_dir),
        influxdb=InfluxSettings(url=f"http://127.0.0.1:{_free_port()}"),
    )
    server = InfluxDB(settings)
    server.start(log.info)
    try:
        yield settings
    finally:
        server.stop(log.info)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Settings]:
    yield from _private_influx(tmp_path / "source-state")


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Settings]:
    yield from _private_influx(tmp_path / "target-state")


def _http(settings: Settings) -> httpx.Client:
    access = load_access(settings.stack.state_dir)
    assert access is not None
    return httpx.Client(
        base_url=settings.influxdb.url,
        headers={"Authorization": f"Token {access.token(OPERATOR)}"},
        timeout=60,
    )


def _write_readings(settings: Settings) -> None:
    """Readings over several days (one shard each) and a few just now (still in the cache)."""
    now_s = int(time.time())
    lines = [
        f"readings,device=scratch-{i % 7},kind=water_level level={i * 0.25},ok={i % 2}i "
        f"{now_s - day * 86_400 - i * 60}"
        for day in range(1, DAYS + 1)
        for i in range(PER_DAY)
    ]
    lines += [f"readings,device=fresh value={i}i {now_s - i}" for i in range(50)]
    rollups = [f"hourly,device=scratch-1 mean={h / 3} {now_s - h * 3600}" for h in range(200)]
    with _http(settings) as http:
        for bucket, body in (("telemetry", lines), ("rollups", rollups)):
            answer = http.post(
                "/api/v2/write",
                params={"org": settings.influxdb.org, "bucket": bucket, "precision": "s"},
                content="\n".join(body),
            )
            assert answer.status_code == 204, answer.text


def _points(settings: Settings, bucket: str) -> list[tuple[str, ...]]:
    flux = (
        f'from(bucket: "{bucket}") |> range(start: 0, stop: {END_OF_TIME}) '
        '|> keep(columns: ["_time", "_measurement", "_field", "_value", "device", "kind"])'
    )
    with _http(settings) as http:
        org_id = http.get("/api/v2/orgs", params={"org": settings.influxdb.org}).json()
        rows = query_rows(http, org_id["orgs"][0]["id"], flux)
        return sorted(
            tuple(
                row.get(c, "")
                for c in ("_measurement", "device", "kind", "_field", "_time", "_value")
            )
            for row in rows
            if row.get("_time")
        )


def _alert_rows(path: Path) -> list[tuple[str, ...]]:
    store = AlertStore(path)
    try:
        return sorted((s.id, s.comment, str(s.ends_ms)) for s in store.silences(0))
    finally:
        store.close()


def _other_files(settings: Settings, config: Path) -> Path:
    mosquitto = settings.stack.state_dir / "mosquitto"
    mosquitto.mkdir(parents=True)
    (mosquitto / "passwd").write_text("scratch-1:$7$101$c2FsdA==$aGFzaA==\n", encoding="utf-8")
    (mosquitto / "acl").write_text(
        "user scratch-1\ntopic write kotaflow/scratch-1/#\n", encoding="utf-8"
    )
    (mosquitto / "credentials.json").write_text(json.dumps({"scratch-1": "pw"}), encoding="utf-8")
    config.write_text("log_level: INFO\n", encoding="utf-8")
    return config


def test_backup_restores_into_an_empty_stack(
    source: Settings, target: Settings, tmp_path: Path
) -> None:
    _write_readings(source)
    config = _other_files(source, tmp_path / "kotaflow.yaml")
    live = AlertStore(alert_state_path(source))  # held open, as `kotaflow alert` would
    for n in range(25):
        live.add_silence(Silence(f"s{n}", 0, 10**13 + n, "test", f"maintenance {n}", 1))
    backup_dir = tmp_path / "backup"

    manifest = run.backup(source, config, backup_dir, log.info, None)
    live.close()

    kinds = {e.kind for e in manifest.entries}
    assert {"influxdb-kv", "influxdb-sql", "influxdb-shard", "alert-state", "state"} <= kinds
    assert len(manifest.of_kind("influxdb-shard")) >= DAYS
    assert manifest.versions["influxdb"].startswith("v2.7")
    assert all(sha256_of(backup_dir / e.path) == e.sha256 for e in manifest.entries)

    with pytest.raises(BackupError, match="refusing to overwrite") as refused:
        run.restore(target, backup_dir, log.info, force=False, files_dir=None, token_path=None)
    assert "tokens.json differs" in str(refused.value)
    assert _points(target, "telemetry") == []  # nothing was touched

    files_dir = tmp_path / "etc"
    seconds = run.restore(
        target, backup_dir, log.info, force=True, files_dir=files_dir, token_path=None
    )
    log.warning("restore took %.2fs", seconds)

    for bucket, expected in (("telemetry", DAYS * PER_DAY + 50), ("rollups", 200)):
        restored = _points(target, bucket)
        assert len(restored) == len(_points(source, bucket)) >= expected
        assert restored == _points(source, bucket)
    assert _alert_rows(alert_state_path(target)) == _alert_rows(alert_state_path(source))
    for name in ("passwd", "acl", "credentials.json"):
        restored_file = target.stack.state_dir / "mosquitto" / name
        assert (
            restored_file.read_bytes() == (source.stack.state_dir / "mosquitto" / name).read_bytes()
        )
    assert (files_dir / "kotaflow.yaml").read_text(encoding="utf-8") == config.read_text(
        encoding="utf-8"
    )
    old_tokens = target.stack.state_dir / "influxdb" / "tokens.json.before-restore"
    assert old_tokens.is_file()  # the fresh stack's own tokens are kept aside, not lost


def test_restore_checks_every_checksum_before_touching_anything(
    source: Settings, tmp_path: Path
) -> None:
    _write_readings(source)
    backup_dir = tmp_path / "backup"
    manifest = run.backup(source, None, backup_dir, log.info, None)
    shard = backup_dir / manifest.of_kind("influxdb-shard")[0].path
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    before = _points(source, "telemetry")

    with pytest.raises(BackupError, match="SHA-256 differs") as refused:
        run.restore(source, backup_dir, log.info, force=True, files_dir=None, token_path=None)

    assert "nothing was restored" in str(refused.value)
    assert _points(source, "telemetry") == before
    assert Manifest.load(backup_dir).entries == manifest.entries


def test_backup_refuses_a_directory_that_holds_files(source: Settings, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("x", encoding="utf-8")
    with pytest.raises(BackupError, match="not empty"):
        run.backup(source, None, tmp_path / "old", log.info, None)
