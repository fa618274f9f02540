"""``kotaflow influxdb setup`` against the local stack's real InfluxDB, in a scratch org,
and against a fresh private ``influxd`` for the initial setup.

The org is created by the command itself and deleted afterwards (with its buckets and
tokens) with the operator token; the operator's own org and buckets are never touched. The
private server (the local stack's binary, its own port and directory) is stopped after.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deploy.influxdb.reconcile import AGGREGATE, GRAFANA, PRODUCTION_ROLES, STORE
from deploy.local.influxdb import OPERATOR, InfluxDB, load_access
from kotaflow.cli import app
from kotaflow.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture
def operator(stack: Settings) -> Iterator[httpx.Client]:
    access = load_access(stack.stack.state_dir)
    assert access is not None
    headers = {"Authorization": f"Token {access.token(OPERATOR)}"}
    with httpx.Client(base_url=stack.influxdb.url, headers=headers, timeout=30.0) as http:
        yield http


@pytest.fixture
def scratch_org(operator: httpx.Client) -> Iterator[str]:
    name = f"test_g3_setup_{uuid.uuid4().hex[:8]}"
    yield name
    found = operator.get("/api/v2/orgs", params={"org": name})
    for org in found.json().get("orgs", []) if found.is_success else []:
        auths = operator.get("/api/v2/authorizations", params={"orgID": org["id"]}).json()
        for auth in auths.get("authorizations", []):
            operator.delete(f"/api/v2/authorizations/{auth['id']}").raise_for_status()
        operator.delete(f"/api/v2/orgs/{org['id']}").raise_for_status()  # and its buckets
    assert operator.get("/api/v2/orgs", params={"org": name}).status_code == 404


def _setup(stack: Settings, org: str, tmp_path: Path) -> list[str]:
    access = load_access(stack.stack.state_dir)
    assert access is not None
    token_file = tmp_path / "operator.token"
    token_file.write_text(access.token(OPERATOR) + "\n", encoding="utf-8")
    argv = ["influxdb", "setup", "--url", stack.influxdb.url, "--org", org]
    argv += ["--token-file", str(token_file), "--tokens-dir", str(tmp_path / "tokens")]
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == 0, done.output
    return done.output.splitlines()


def test_setup_creates_then_keeps_and_reports_drift(
    stack: Settings,
    scratch_org: str,
    operator: httpx.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOTAFLOW_INFLUXDB__TELEMETRY_RETENTION_DAYS", "7")
    first = _setup(stack, scratch_org, tmp_path)
    assert f"influxdb: created org {scratch_org}" in first
    assert "influxdb: created bucket telemetry (retention 7 days)" in first
    assert "influxdb: created bucket rollups (retention 730 days)" in first
    assert "influxdb: created store token (write telemetry)" in first
    assert "influxdb: created aggregate token (read rollups, telemetry; write rollups)" in first
    assert "influxdb: created grafana token (read rollups, telemetry)" in first
    assert not [line for line in first if "pipeline" in line]  # no shared token by default
    tokens = {
        role: (tmp_path / "tokens" / f"{role}.token").read_text(encoding="utf-8")
        for role in PRODUCTION_ROLES
    }
    assert all(
        (tmp_path / "tokens" / f"{role}.token").stat().st_mode & 0o077 == 0 for role in tokens
    )

    second = _setup(stack, scratch_org, tmp_path)
    assert not [line for line in second if "created" in line or "drifted" in line], second
    assert f"influxdb: kept org {scratch_org}" in second
    assert "influxdb: kept bucket telemetry (retention 7 days)" in second
    assert "influxdb: kept grafana token (read rollups, telemetry)" in second
    assert f"influxdb: kept {tmp_path / 'tokens' / 'store.token'}" in second
    assert {
        r: (tmp_path / "tokens" / f"{r}.token").read_text(encoding="utf-8") for r in tokens
    } == tokens

    org_id = operator.get("/api/v2/orgs", params={"org": scratch_org}).json()["orgs"][0]["id"]
    buckets = operator.get("/api/v2/buckets", params={"orgID": org_id}).json()["buckets"]
    (rollups,) = [b for b in buckets if b["name"] == "rollups"]
    rules = [{"type": "expire", "everySeconds": 365 * 86_400}]
    operator.patch(
        f"/api/v2/buckets/{rollups['id']}", json={"retentionRules": rules}
    ).raise_for_status()
    third = _setup(stack, scratch_org, tmp_path)
    drifted = [line for line in third if "drifted" in line]
    assert len(drifted) == 1, third
    assert drifted[0].startswith(
        "influxdb: drifted bucket rollups: retention 365 days, "
        "the settings say 730 days (not changed"
    )
    after = operator.get(f"/api/v2/buckets/{rollups['id']}").json()
    assert after["retentionRules"][0]["everySeconds"] == 365 * 86_400  # left as the operator set it


def test_the_tokens_have_only_their_roles_rights(
    stack: Settings, scratch_org: str, tmp_path: Path
) -> None:
    _setup(stack, scratch_org, tmp_path)
    tokens = {
        r: (tmp_path / "tokens" / f"{r}.token").read_text(encoding="utf-8").strip()
        for r in PRODUCTION_ROLES
    }
    line = f"probe,device=test_g3 v=1 {int(time.time())}"
    params = {"org": scratch_org, "bucket": "telemetry", "precision": "s"}
    url = f"{stack.influxdb.url}/api/v2/write"
    for role, status in ((STORE, 204), (AGGREGATE, 403), (GRAFANA, 403)):
        headers = {"Authorization": f"Token {tokens[role]}"}
        wrote = httpx.post(url, params=params, content=line, headers=headers, timeout=10.0)
        assert wrote.status_code == status, (role, wrote.text)
    other_org = {"org": stack.influxdb.org, "bucket": stack.influxdb.telemetry_bucket}
    headers = {"Authorization": f"Token {tokens[STORE]}"}
    refused = httpx.post(url, params={**params, **other_org}, content=line, headers=headers)
    assert refused.status_code in (401, 403, 404)  # nothing reaches the operator's buckets


@pytest.fixture
def fresh_influxd(stack: Settings, tmp_path: Path) -> Iterator[str]:
    """The URL of a new ``influxd`` nobody has set up yet."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    influx = stack.influxdb.model_copy(update={"url": url})
    place = stack.stack.model_copy(update={"state_dir": tmp_path / "state"})
    service = InfluxDB(stack.model_copy(update={"influxdb": influx, "stack": place}))
    if not service.binary.is_file():
        pytest.skip("influxd is not built (kotaflow stack up builds it)")
    service.data_dir.mkdir(parents=True)
    log = (tmp_path / "influxd.log").open("w", encoding="utf-8")
    env = {**os.environ, **service._env()}
    proc = subprocess.Popen(service._argv(), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail((tmp_path / "influxd.log").read_text(encoding="utf-8")[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).json().get("status") == "pass"
    except (httpx.HTTPError, ValueError):
        return False


def test_initial_setup_of_a_new_server_then_a_no_op(fresh_influxd: str, tmp_path: Path) -> None:
    """The VM guide's command: the first run sets the server up (user, org, a new operator
    token written 0600 before the server knows it), the second finds everything."""
    password = tmp_path / "admin.password"
    password.write_text("a-long-enough-password\n", encoding="utf-8")
    token_file = tmp_path / "etc" / "operator.token"
    argv = ["influxdb", "setup", "--url", fresh_influxd, "--token-file", str(token_file)]
    argv += ["--init-user", "kotaflow-admin", "--init-password-file", str(password)]
    argv += ["--tokens-dir", str(tmp_path / "tokens")]
    first = CliRunner().invoke(app, argv)
    assert first.exit_code == 0, first.output
    assert f"created the initial setup (user kotaflow-admin, token in {token_file})" in (
        first.output.replace("\n", " ")
    )
    assert token_file.stat().st_mode & 0o077 == 0
    assert "influxdb: kept bucket telemetry (retention 90 days)" in first.output  # the setup's
    assert "influxdb: created bucket rollups (retention 730 days)" in first.output
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0, again.output
    assert "created" not in again.output, again.output
    assert "drifted" not in again.output, again.output
    assert sorted(p.stem for p in (tmp_path / "tokens").iterdir()) == sorted(PRODUCTION_ROLES)


def test_no_operator_token_is_a_clear_error(fresh_influxd: str, tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["influxdb", "setup", "--url", fresh_influxd])
    assert done.exit_code == 1
    assert "no operator token" in done.output
    missing = tmp_path / "nope.token"
    done = CliRunner().invoke(
        app, ["influxdb", "setup", "--url", fresh_influxd, "--token-file", str(missing)]
    )
    assert done.exit_code == 1
    assert f"{missing}: no such file" in done.output.replace("\n", "")


def test_a_recreated_bucket_leaves_its_tokens_reported_as_drifted(
    stack: Settings, scratch_org: str, operator: httpx.Client, tmp_path: Path
) -> None:
    """Tokens name buckets by id: after a bucket is dropped and made again, the old tokens
    grant nothing on it, and the setup says which ones (it never deletes a token)."""
    _setup(stack, scratch_org, tmp_path)
    org_id = operator.get("/api/v2/orgs", params={"org": scratch_org}).json()["orgs"][0]["id"]
    buckets = operator.get("/api/v2/buckets", params={"orgID": org_id}).json()["buckets"]
    (rollups,) = [b for b in buckets if b["name"] == "rollups"]
    operator.delete(f"/api/v2/buckets/{rollups['id']}").raise_for_status()
    again = _setup(stack, scratch_org, tmp_path)
    assert "influxdb: created bucket rollups (retention 730 days)" in again
    drifted = sorted(line.split(":")[1].strip() for line in again if "drifted" in line)
    assert drifted == [
        "drifted aggregate token",
        "drifted grafana token",
        "drifted health token",
        "drifted public token",
    ]
