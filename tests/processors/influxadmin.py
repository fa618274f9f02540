"""Scratch InfluxDB buckets and tokens for one test, made and removed with the operator token.

What an operator does to a running pipeline: issue a token, revoke it, delete a bucket,
re-create it. Everything made here is deleted on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kotaflow.settings import Settings
from tests.support.scratch_influx import create_bucket, operator_http


@dataclass
class InfluxAdmin:
    http: httpx.AsyncClient
    org_id: str
    buckets: dict[str, str] = field(default_factory=dict)
    """name -> id of the buckets made here (and not deleted yet)."""
    tokens: dict[str, str] = field(default_factory=dict)
    """token -> authorization id, of the tokens made here."""

    async def create_bucket(self, name: str) -> str:
        self.buckets[name] = await create_bucket(self.http, self.org_id, name)
        return self.buckets[name]

    async def delete_bucket(self, name: str) -> None:
        bucket_id = self.buckets.pop(name)
        (await self.http.delete(f"/api/v2/buckets/{bucket_id}")).raise_for_status()

    async def create_token(self, buckets: list[str] | None) -> str:
        """A token that may read and write ``buckets`` (by id, as the stack's tokens are),
        or every bucket of the org (None: a bucket re-created later is covered too)."""
        if buckets is None:
            resources = [{"type": "buckets", "orgID": self.org_id}]
        else:
            resources = [
                {"type": "buckets", "id": self.buckets[b], "orgID": self.org_id} for b in buckets
            ]
        permissions = [{"action": a, "resource": r} for r in resources for a in ("read", "write")]
        made = await self.http.post(
            "/api/v2/authorizations",
            json={"orgID": self.org_id, "description": "kotaflow test", "permissions": permissions},
        )
        made.raise_for_status()
        token: str = made.json()["token"]
        self.tokens[token] = made.json()["id"]
        return token

    async def revoke(self, token: str) -> None:
        """Delete the token, as an operator does with a leaked or rotated one."""
        auth_id = self.tokens.pop(token)
        (await self.http.delete(f"/api/v2/authorizations/{auth_id}")).raise_for_status()


@contextlib.asynccontextmanager
async def influx_admin(settings: Settings) -> AsyncIterator[InfluxAdmin]:
    async with operator_http(settings) as (http, org_id):
        admin = InfluxAdmin(http, org_id)
        try:
            yield admin
        finally:
            for bucket_id in admin.buckets.values():
                await http.delete(f"/api/v2/buckets/{bucket_id}")
            for auth_id in admin.tokens.values():
                await http.delete(f"/api/v2/authorizations/{auth_id}")


def with_token_file(settings: Settings, buckets: tuple[str, str], token_file: Path) -> Settings:
    """``settings`` writing ``buckets`` (telemetry, rollups) with the token in ``token_file``
    (read again on every retry: rotating it is writing the file)."""
    influx = settings.influxdb.model_copy(
        update={"telemetry_bucket": buckets[0], "rollups_bucket": buckets[1], "token": None}
    )
    processing = settings.processing.model_copy(update={"influx_token_file": token_file})
    return settings.model_copy(update={"influxdb": influx, "processing": processing})
