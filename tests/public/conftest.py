"""Fixtures of the public service's tests: the packaged fleet and rules, judged."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploy.grafana.context import load_context
from kotaflow.settings import Settings
from processors.public.snapshot import PublicContext, Snapshot, build_snapshot
from tests.conftest import ScratchLedger

NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
"""14.00 WITA."""


@pytest.fixture(scope="session")
def public() -> PublicContext:
    return PublicContext.of(load_context(Settings()))


@pytest.fixture
def public_influx(
    stack: Settings, scratch_ledger: ScratchLedger, tmp_path: Path
) -> Iterator[Settings]:
    """Scratch buckets, each role with its own token on them (the service: ``grafana``)."""
    tag = uuid.uuid4().hex[:8]
    mine = scratch_ledger.scratch(stack, tag, role_tokens=tmp_path / "tokens")
    try:
        yield mine
    finally:
        scratch_ledger.drop(stack, tag)


def snapshot_of(
    public: PublicContext,
    values: Mapping[str, Mapping[str, float]],
    rain: Mapping[str, float] | None = None,
    *,
    age: timedelta = timedelta(minutes=2),
    silent: Iterable[str] = (),
) -> Snapshot:
    """A snapshot where every public device reported ``age`` ago (``silent`` ones 3 h ago)
    with ``values[device]`` (others: their metrics at 1.0)."""
    quiet = set(silent)
    rows = []
    for spec in public.devices:
        device = spec.device.id
        at = NOW - (timedelta(hours=3) if device in quiet else age)
        given = values.get(device, {})
        for metric in spec.metrics:
            rows.append((device, metric, float(given.get(metric, 1.0)), at))
    for device, metrics in values.items():  # private devices' rows too: must be dropped
        for metric, value in metrics.items():
            rows.append((device, metric, float(value), NOW - age))
    return build_snapshot(public, rows, dict(rain or {}), NOW)
