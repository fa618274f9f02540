"""Broker accounts from the registry (``devices/credentials.py``), without a broker: the
password hash Mosquitto checks, the ACL's rules, and what re-running keeps or changes.
The running broker enforcing them is pinned in ``tests/stack/test_mosquitto_security.py``."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from devices.catalogue import load_catalogue
from devices.credentials import (
    CredentialsError,
    acl_text,
    mosquitto_hash,
    publishing_account,
    write_broker_files,
)
from devices.registry import PACKAGED_REGISTRY, Registry, load_registry
from kotaflow.cli import app
from kotaflow.mqtt import Account, read_credentials
from kotaflow.wire.raw import PayloadFormat


def _registry(tmp_path: Path, edit: dict[str, dict[str, object]] | None = None) -> Registry:
    """The packaged registry, with fields of some devices changed (``None`` removes one)."""
    data = yaml.safe_load(PACKAGED_REGISTRY.read_text(encoding="utf-8"))
    for device_id, fields in (edit or {}).items():
        for device in data["devices"]:
            if device["id"] == device_id:
                device.update(fields)
    data["devices"] = [d for d in data["devices"] if not d.get("_remove")]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_registry(load_catalogue(), path)


def _passwords(directory: Path) -> dict[str, str]:
    return {
        u: p.get_secret_value() for u, p in read_credentials(directory / "credentials.json").items()
    }


def test_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run([tool, "-b", str(passwd), "alice", "s3cret-pw"], check=True)
    _, theirs = passwd.read_text(encoding="utf-8").strip().split(":", 1)
    salt = base64.b64decode(theirs.split("$")[3])
    assert mosquitto_hash("s3cret-pw", salt) == theirs
    assert mosquitto_hash("s3cret-pw") != mosquitto_hash("s3cret-pw")  # a fresh salt each


def test_each_device_may_publish_on_its_own_topics_only(tmp_path: Path) -> None:
    registry = _registry(tmp_path, {"rtg-aq-02": {"enabled": False}})
    blocks = {
        block.splitlines()[0].removeprefix("user "): block.splitlines()[1:]
        for block in acl_text(registry).split("\n\n")
        if block.startswith("user ")
    }
    assert blocks["rtg-aq-01"] == [
        "topic write kotaflow/rtg-aq-01/telemetry",
        "topic write kotaflow/rtg-aq-01/senml",
    ]
    assert "rtg-aq-02" not in blocks, "a disabled device gets no rights"
    *reads, own = blocks[Account.BRIDGE]
    assert all(line.startswith("topic read ") for line in reads)
    assert own == "topic readwrite kotaflow-bridge/#"  # its backlog marker, nothing of devices
    assert blocks[Account.CHIRPSTACK] == ["topic write application/#"]
    assert blocks[Account.TTS] == ["topic write v3/#"]
    assert Account.HEALTH not in blocks
    assert "pattern" not in acl_text(registry), "no rule applies to every account"


def test_lorawan_uplinks_are_published_by_the_network_server_accounts() -> None:
    assert publishing_account(PayloadFormat.CHIRPSTACK_V4, "d") is Account.CHIRPSTACK
    assert publishing_account(PayloadFormat.TTS_V3, "d") is Account.TTS
    assert publishing_account(PayloadFormat.SENML_JSON, "d") == "d"


def test_a_device_named_like_a_service_account_is_refused(tmp_path: Path) -> None:
    registry = _registry(tmp_path, {"rtg-aq-01": {"id": "kotaflow-bridge"}})
    with pytest.raises(CredentialsError, match="kotaflow-bridge"):
        write_broker_files(registry, tmp_path / "out")


def test_rerunning_keeps_passwords_and_leaves_the_files_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = write_broker_files(_registry(tmp_path), out)
    assert first.changed
    assert len(first.added) == first.accounts
    before = _passwords(out)
    passwd = (out / "passwd").read_text(encoding="utf-8")
    again = write_broker_files(_registry(tmp_path), out)
    assert not again.changed
    assert again.added == again.removed == ()
    assert _passwords(out) == before
    assert (out / "passwd").read_text(encoding="utf-8") == passwd, (
        "unchanged accounts: no reload needed"
    )
    for name in ("credentials.json", "passwd", "acl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name


def test_registry_changes_and_rotation_touch_only_their_accounts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_broker_files(_registry(tmp_path), out)
    before = _passwords(out)
    changed = _registry(tmp_path, {"rtg-aq-01": {"_remove": True}, "rtg-aq-02": {"id": "x-new"}})
    report = write_broker_files(changed, out, rotate=["rtg-aq-03"])
    after = _passwords(out)
    assert report.changed
    assert report.added == ("x-new",)
    assert report.removed == ("rtg-aq-01", "rtg-aq-02")
    assert after["rtg-aq-03"] != before["rtg-aq-03"]
    unchanged = set(after) - {"x-new", "rtg-aq-03"}
    assert {u: after[u] for u in unchanged} == {u: before[u] for u in unchanged}
    users = {
        line.split(":", 1)[0] for line in (out / "passwd").read_text(encoding="utf-8").splitlines()
    }
    assert users == set(after)


def test_cli_writes_the_files_and_prints_no_password(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    result = CliRunner().invoke(app, ["devices", "credentials", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "credentials.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert not [pw for pw in data["accounts"].values() if pw in result.output]
    rotated = CliRunner().invoke(app, ["devices", "credentials", str(out), "--rotate", "nobody"])
    assert rotated.exit_code == 1
    assert "nobody" in rotated.output
