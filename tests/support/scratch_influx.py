"""Scratch InfluxDB buckets for tests and benchmarks on the shared local stack.

:func:`scratch_buckets` gives settings whose ``telemetry`` and ``rollups`` buckets are fresh
ones of their own (created with the local stack's operator token, deleted on exit), so a
test's or benchmark's points never land in the operator's buckets, where dashboards and the
no-data rule would pick them up. With ``role_tokens`` every stage also gets a token with
the rights its role has in production, on those buckets only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from pydantic import SecretStr

from deploy.influxdb.reconcile import stage_rights
from deploy.local.influxdb import OPERATOR, load_access
from kotaflow.secretfiles import write_private
from kotaflow.settings import Settings

log = logging.getLogger("kotaflow.testing")

SCRATCH_ROLES = ("telemetry", "rollups")


def scratch_names(tag: str, prefix: str) -> dict[str, str]:
    """Bucket names ``<prefix>_<tag>_{telemetry,rollups}``."""
    return {role: f"{prefix}_{tag}_{role}" for role in SCRATCH_ROLES}


def _operator(settings: Settings) -> tuple[str, str]:
    """(operator token, org id) of the local stack."""
    access = load_access(settings.stack.state_dir)
    if access is None:
        raise RuntimeError("no InfluxDB tokens in the stack's state dir: run `kotaflow stack up`")
    return access.token(OPERATOR), access.org_id


@contextlib.asynccontextmanager
async def operator_http(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An HTTP client on the local stack's InfluxDB with the operator token, and the org id."""
    token, org_id = _operator(settings)
    headers = {"Authorization": f"Token {token}"}
    async with httpx.AsyncClient(
        base_url=settings.influxdb.url, headers=headers, timeout=30.0
    ) as http:
        yield http, org_id


async def create_bucket(http: httpx.AsyncClient, org_id: str, name: str) -> str:
    """A bucket without retention; its id."""
    made = await http.post(
        "/api/v2/buckets", json={"orgID": org_id, "name": name, "retentionRules": []}
    )
    made.raise_for_status()
    return str(made.json()["id"])


async def create_scratch_buckets(
    settings: Settings, tag: str, prefix: str = "bench", role_tokens: Path | None = None
) -> Settings:
    """Create the buckets of :func:`scratch_names`; ``settings`` using them with the operator
    token (which may write and read them). Undo with :func:`drop_scratch_buckets`.

    With ``role_tokens`` (a directory), also issue one token per role with the rights the
    local stack gives it (:func:`deploy.influxdb.reconcile.stage_rights`), but on the scratch
    buckets, written there as ``<role>.token``; the settings then use that directory
    (``processing.influx_token_dir``) instead of the operator token, so each stage runs
    with no more rights than in production."""
    token, _ = _operator(settings)
    names = scratch_names(tag, prefix)
    influx = settings.influxdb.model_copy(
        update={
            "telemetry_bucket": names["telemetry"],
            "rollups_bucket": names["rollups"],
            "token": SecretStr(token) if role_tokens is None else None,
        }
    )
    mine = settings.model_copy(update={"influxdb": influx})
    async with operator_http(settings) as (http, org_id):
        try:
            ids = {name: await create_bucket(http, org_id, name) for name in names.values()}
            if role_tokens is not None:
                await _issue_role_tokens(http, mine, org_id, ids, role_tokens, f"{prefix}_{tag}")
        except Exception:
            await drop_scratch_buckets(settings, tag, prefix)
            raise
    if role_tokens is None:
        return mine
    processing = mine.processing.model_copy(update={"influx_token_dir": role_tokens})
    return mine.model_copy(update={"processing": processing})


async def _issue_role_tokens(
    http: httpx.AsyncClient,
    settings: Settings,
    org_id: str,
    bucket_ids: dict[str, str],
    folder: Path,
    owner: str,
) -> None:
    for role, rights in stage_rights(settings).items():
        permissions = [
            {"action": action, "resource": {"type": "buckets", "id": bucket_ids[name]}}
            for action, name in rights
        ]
        made = await http.post(
            "/api/v2/authorizations",
            json={"orgID": org_id, "description": f"{owner} {role}", "permissions": permissions},
        )
        made.raise_for_status()
        write_private(folder / f"{role}.token", made.json()["token"] + "\n")


async def drop_scratch_buckets(settings: Settings, tag: str, prefix: str = "bench") -> bool:
    """Delete the buckets of :func:`scratch_names` and the role tokens issued for them;
    whether nothing is left.

    Never raises (a clean-up must not hide the outcome it follows)."""
    try:
        async with operator_http(settings) as (http, org_id):
            for name in scratch_names(tag, prefix).values():
                found = await http.get("/api/v2/buckets", params={"orgID": org_id, "name": name})
                for bucket in found.json().get("buckets", []) if found.is_success else []:
                    gone = await http.delete(f"/api/v2/buckets/{bucket['id']}")
                    gone.raise_for_status()
            auths = await http.get("/api/v2/authorizations", params={"orgID": org_id})
            auths.raise_for_status()
            for auth in auths.json().get("authorizations", []):
                if str(auth.get("description", "")).startswith(f"{prefix}_{tag} "):
                    gone = await http.delete(f"/api/v2/authorizations/{auth['id']}")
                    gone.raise_for_status()
        return True
    except Exception as err:  # a clean-up reports, never raises
        log.warning("could not delete scratch buckets of %s: %r", tag, err)
        return False


@contextlib.asynccontextmanager
async def scratch_buckets(
    settings: Settings, tag: str, prefix: str = "bench"
) -> AsyncIterator[Settings]:
    """``settings`` writing to fresh buckets of their own, deleted on exit."""
    mine = await create_scratch_buckets(settings, tag, prefix)
    try:
        yield mine
    finally:
        await drop_scratch_buckets(settings, tag, prefix)
