"""Shared fixtures. Tests marked ``services`` talk to the real local stack, started once.

Tests never write into the operator's InfluxDB buckets: :func:`scratch_influx` gives a test
buckets of its own, and at the end of the session :func:`operator_buckets_untouched` checks
that every scratch bucket and token is gone and that no device tag a test used is in the
operator's ``telemetry`` or ``rollups``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kotaflow.settings import Settings, load_settings
from tests.support.scratch_influx import create_scratch_buckets, drop_scratch_buckets

log = logging.getLogger("tests.stack")

SESSION = uuid.uuid4().hex[:6]
"""In every scratch bucket's name (``test<SESSION>_<tag>_<role>``), so the end-of-session
check finds this session's buckets and no one else's."""


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The local stack, up and healthy (idempotent: a running stack is left as it is)."""
    from deploy.local import stack as local_stack

    statuses = local_stack.up(settings, log.info)
    unhealthy = [s for s in statuses if not s.healthy]
    if unhealthy:
        pytest.fail(f"local stack unhealthy: {unhealthy}")
    return settings


@dataclass
class ScratchLedger:
    """What this session's tests put on the local InfluxDB, to check it is all gone."""

    tags: set[str] = field(default_factory=set)
    """Scratch bucket tags, and device-id prefixes tests used (``<tag>-<device>``)."""
    used: Settings | None = None

    def scratch(self, settings: Settings, tag: str, role_tokens: Path | None = None) -> Settings:
        """``settings`` with scratch buckets of their own (drop with :meth:`drop`); with
        ``role_tokens``, each stage with its own least-privilege token on them."""
        self.used = settings
        self.tags.add(tag)
        return asyncio.run(create_scratch_buckets(settings, tag, f"test{SESSION}", role_tokens))

    def drop(self, settings: Settings, tag: str) -> None:
        asyncio.run(drop_scratch_buckets(settings, tag, f"test{SESSION}"))


@pytest.fixture(scope="session")
def scratch_ledger() -> Iterator[ScratchLedger]:
    ledger = ScratchLedger()
    yield ledger
    if ledger.used is not None:
        left = asyncio.run(_left_behind(ledger.used, ledger.tags))
        assert not left, f"the suite left this in the operator's InfluxDB: {left}"


@pytest.fixture
def scratch_influx(stack: Settings, scratch_ledger: ScratchLedger) -> Iterator[Settings]:
    """The stack's settings with ``telemetry``/``rollups`` buckets of this test's own."""
    tag = uuid.uuid4().hex[:8]
    mine = scratch_ledger.scratch(stack, tag)
    try:
        yield mine
    finally:
        scratch_ledger.drop(stack, tag)


async def _left_behind(settings: Settings, tags: set[str]) -> list[str]:
    """This session's scratch buckets and tokens still there, and the operator's buckets'
    device tags that start with a tag this session used."""
    import httpx

    from deploy.local.influxdb import OPERATOR, load_access
    from processors.runtime.influx import InfluxSink, flux_string

    access = load_access(settings.stack.state_dir)
    assert access is not None
    headers = {"Authorization": f"Token {access.token(OPERATOR)}"}
    async with httpx.AsyncClient(base_url=settings.influxdb.url, headers=headers) as http:
        found = await http.get("/api/v2/buckets", params={"orgID": access.org_id, "limit": 100})
        names = [str(b["name"]) for b in found.json().get("buckets", [])]
        found = await http.get("/api/v2/authorizations", params={"orgID": access.org_id})
        tokens = [str(a.get("description", "")) for a in found.json().get("authorizations", [])]
    left = [f"bucket {n}" for n in names if n.startswith(f"test{SESSION}_")]
    left += [f"token {d!r}" for d in tokens if d.startswith(f"test{SESSION}_")]
    operator = settings.model_copy(
        update={"influxdb": settings.influxdb.model_copy(update={"token": None})}
    )
    async with InfluxSink(operator) as influx:
        for bucket in (settings.influxdb.telemetry_bucket, settings.influxdb.rollups_bucket):
            flux = (
                'import "influxdata/influxdb/schema"\n'
                f'schema.tagValues(bucket: {flux_string(bucket)}, tag: "device", start: -400d)'
            )
            devices = [str(row["_value"]) for row in await influx.query(flux)]
            left += [f"{bucket}: device {d}" for d in devices if any(d.startswith(t) for t in tags)]
    return left
