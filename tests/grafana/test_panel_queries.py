"""Proof without Grafana: every panel and alert-rule query runs against the real InfluxDB.

A simulated six hours (:mod:`tests.grafana.simulated_run`) is written to two buckets of
this test's own (so other tests' points and ours never mix), the dashboards and rules are
generated for those buckets, and each query - variables resolved by running the
dashboard's own variable queries, time macros filled in as Grafana does - is run with a
read-only token on exactly those buckets, like the Grafana data source's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deploy.grafana.bundle import Bundle, build_bundle
from deploy.grafana.cli import run_checks
from deploy.grafana.context import load_context
from deploy.grafana.fleetrows import registry_rows
from deploy.grafana.flux import alerts_count, device_count, device_status
from deploy.grafana.i18n import Lang
from deploy.grafana.interpolate import QueryWindow, interpolate
from deploy.grafana.querycheck import PanelCheck
from deploy.local.influxdb import OPERATOR, load_access
from kotaflow.settings import Settings
from processors.runtime.influx import InfluxSink
from tests.conftest import ScratchLedger
from tests.grafana.simulated_run import STAGE_RATES, SimulatedRun, simulate

pytestmark = pytest.mark.services

HOURS = 6.0
BATCH = 5000
DEVICE_ALERTS = {"Peringatan perangkat ini", "Alerts of this device"}


@pytest.fixture(scope="module")
def influx(stack: Settings, scratch_ledger: ScratchLedger) -> Iterator[tuple[Settings, Settings]]:
    """(writer, reader) settings on two scratch buckets: the writer with the operator token,
    the reader with a read-only token on exactly those buckets; all removed afterwards."""
    access = load_access(stack.stack.state_dir)
    if access is None:
        pytest.fail("the local stack has no InfluxDB tokens file: is influxdb in the stack?")
    tag = f"grafana{uuid.uuid4().hex[:8]}"
    writer = scratch_ledger.scratch(stack, tag)
    headers = {"Authorization": f"Token {access.token(OPERATOR)}"}
    try:
        with httpx.Client(base_url=stack.influxdb.url, headers=headers, timeout=30.0) as http:
            names = (writer.influxdb.telemetry_bucket, writer.influxdb.rollups_bucket)
            permissions = [
                {
                    "action": "read",
                    "resource": {"type": "buckets", "id": bucket_id, "orgID": access.org_id},
                }
                for bucket_id in _bucket_ids(http, access.org_id, names)
            ]
            auth = http.post(
                "/api/v2/authorizations",
                json={
                    "orgID": access.org_id,
                    "description": f"grafana test {tag}",
                    "permissions": permissions,
                },
            )
            auth.raise_for_status()
            token = SecretStr(auth.json()["token"])
            reader = writer.model_copy(
                update={"influxdb": writer.influxdb.model_copy(update={"token": token})}
            )
            try:
                yield writer, reader
            finally:
                http.delete(f"/api/v2/authorizations/{auth.json()['id']}")
    finally:
        scratch_ledger.drop(stack, tag)


def _bucket_ids(http: httpx.Client, org_id: str, names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        found = http.get("/api/v2/buckets", params={"orgID": org_id, "name": name})
        found.raise_for_status()
        out += [str(b["id"]) for b in found.json()["buckets"]]
    return out


@pytest.fixture(scope="module")
def run(influx: tuple[Settings, Settings]) -> SimulatedRun:
    writer, _ = influx
    ctx = load_context(writer)
    simulated = simulate(
        ctx.fleet,
        ctx.rules,
        int(time.time() * 1000),
        hours=HOURS,
        alerts_measurement=ctx.influx.alerts_measurement,
        health_measurement=ctx.influx.health_measurement,
    )
    writes = [
        (ctx.influx.telemetry_bucket, simulated.telemetry),
        (ctx.influx.rollups_bucket, simulated.rollups),
        (ctx.influx.alerts_bucket, simulated.alerts),
        (ctx.influx.health_bucket, simulated.health),
    ]

    async def write() -> None:
        async with InfluxSink(writer) as sink:
            for bucket, lines in writes:
                for start in range(0, len(lines), BATCH):
                    refused = await sink.write(bucket, lines[start : start + BATCH])
                    assert refused == []

    asyncio.run(write())
    return simulated


@pytest.fixture(scope="module")
def bundle(influx: tuple[Settings, Settings]) -> Bundle:
    return build_bundle(influx[1])


def _checks(reader: Settings, bundle: Bundle, choose: dict[str, str]) -> list[PanelCheck]:
    return asyncio.run(run_checks(reader, bundle, timedelta(hours=HOURS), choose))


def _report(checks: list[PanelCheck]) -> str:
    """Each failed query's problems, then (once) the query text of the first."""
    lines = [f"{c.dashboard} / {c.panel} [{c.repeat}]: {c.problems}" for c in checks]
    return "\n".join([*lines, "first query:", checks[0].query if checks else ""])


def test_every_panel_and_rule_query_returns_rows_of_its_shape(
    influx: tuple[Settings, Settings], run: SimulatedRun, bundle: Bundle
) -> None:
    reader = influx[1]
    indonesian = build_bundle(reader, [Lang.ID])
    checks = _checks(reader, indonesian, {"device": run.silent_device})
    failed = [c for c in checks if not c.ok]
    assert failed == [], _report(failed)
    panels = sum(1 for _, b in indonesian.dashboards for p in b["panels"] if p["type"] != "row")
    assert len({(c.dashboard, c.panel) for c in checks}) >= panels
    rules = {r["uid"] for g in indonesian.alerting.groups for r in g["rules"]}
    assert rules <= {c.dashboard for c in checks}


def test_the_drill_down_works_for_a_device_of_every_type(
    influx: tuple[Settings, Settings], run: SimulatedRun, bundle: Bundle
) -> None:
    reader = influx[1]
    english = build_bundle(reader, [Lang.EN])
    english = Bundle(
        english.datasource,
        english.folders,
        [(f, b) for f, b in english.dashboards if b["uid"] == "kotaflow-device-en"],
        english.alerting,
    )
    ctx = load_context(reader)
    reporting = [
        d
        for d in ctx.fleet.registry
        if d.enabled and d.id not in (run.silent_device, run.never_device)
    ]
    for type_name in ctx.fleet.catalogue.types:
        device = next(d for d in reporting if d.type == type_name)
        checks = _checks(reader, english, {"device": device.id})
        panel_checks = [c for c in checks if c.dashboard == "kotaflow-device-en"]
        repeats = {c.repeat for c in panel_checks if c.repeat}
        assert repeats == set(ctx.fleet.catalogue.types[type_name].metrics), device.id
        failed = [
            c
            for c in panel_checks
            if not c.ok and not (c.panel in DEVICE_ALERTS and c.problems == ["no rows"])
        ]
        assert failed == [], _report(failed)


def test_the_map_marks_status_and_the_category_of_the_latest_value(
    influx: tuple[Settings, Settings], run: SimulatedRun
) -> None:
    reader = influx[1]
    ctx = load_context(reader)
    rows = {row.device: row for row in registry_rows(ctx)}

    async def statuses() -> list[dict[str, Any]]:
        async with InfluxSink(reader) as sink:
            return await sink.query(device_status(ctx.influx.telemetry_bucket, list(rows.values())))

    found = {row["device"]: row for row in asyncio.run(statuses())}
    assert set(found) == set(rows)
    status = {device: row["status"] for device, row in found.items()}
    assert status[run.silent_device] == 1
    assert status[run.never_device] == 2
    assert {d for d, s in status.items() if s == 0} == set(rows) - {
        run.silent_device,
        run.never_device,
    }
    for device, row in found.items():
        value, registry = row.get("value"), rows[device]
        if value is None:
            assert row["category"] == "-", device
            continue
        reached = sum(1 for step in registry.steps if value >= step)
        assert row["category"] == registry.categories[reached], (device, value)
    rivers = {found[d]["category"] for d, r in rows.items() if r.type == "river_level"}
    assert rivers <= {"Normal", "Waspada", "Siaga", "Awas"}


def test_the_silent_device_alert_fires_in_grafanas_rule_and_in_the_firing_table(
    influx: tuple[Settings, Settings], run: SimulatedRun, bundle: Bundle
) -> None:
    reader = influx[1]
    assert ("perangkat_senyap", run.silent_device) in run.firing
    rule = next(
        r for g in bundle.alerting.groups for r in g["rules"] if g["title"] == "perangkat_senyap"
    )
    threshold = next(d for d in rule["data"] if d["refId"] == "C")["model"]["conditions"][0]
    (limit,) = threshold["evaluator"]["params"]

    async def ages() -> dict[str, float]:
        now = datetime.now(UTC)
        signal = next(d for d in rule["data"] if d["refId"] == "A")
        window = QueryWindow(now - timedelta(days=7), now, timedelta(minutes=1), "", "")
        async with InfluxSink(reader) as sink:
            rows = await sink.query(interpolate(signal["model"]["query"], {}, window))
        return {row["device"]: row["_value"] for row in rows}

    found = asyncio.run(ages())
    over = {device for device, age in found.items() if age > limit}
    assert over == {run.silent_device}


def test_pipeline_rates_sum_the_instances_of_a_stage(
    influx: tuple[Settings, Settings], run: SimulatedRun, bundle: Bundle
) -> None:
    reader = influx[1]
    board = next(b for _, b in bundle.dashboards if b["uid"] == "kotaflow-pipeline")
    panel = next(p for p in board["panels"] if '"records_in"' in p["targets"][0]["query"])

    async def rates() -> dict[str, list[float]]:
        now = datetime.now(UTC)
        window = QueryWindow(now - timedelta(minutes=30), now, timedelta(minutes=1), "", "")
        async with InfluxSink(reader) as sink:
            rows = await sink.query(interpolate(panel["targets"][0]["query"], {}, window))
        out: dict[str, list[float]] = {}
        for row in rows:
            out.setdefault(row["stage"], []).append(row["_value"])
        return out

    found = asyncio.run(rates())
    for stage, per_instance in STAGE_RATES.items():
        assert statistics.median(found[stage]) == pytest.approx(sum(per_instance), rel=0.02), stage


def test_overview_counts_match_the_simulated_run(
    influx: tuple[Settings, Settings], run: SimulatedRun
) -> None:
    reader = influx[1]
    ctx = load_context(reader)
    rows = registry_rows(ctx)
    telemetry, rollups = ctx.influx.telemetry_bucket, ctx.influx.rollups_bucket

    async def count(query: str) -> int:
        async with InfluxSink(reader) as sink:
            (row,) = await sink.query(query)
        return int(next(v for k, v in row.items() if k in ("device", "rule")))

    async def counts() -> tuple[int, ...]:
        return (
            await count(device_count(telemetry, rows, 0)),
            await count(device_count(telemetry, rows, 1)),
            await count(alerts_count(telemetry, ctx.influx.alerts_measurement)),
            await count(alerts_count(rollups, ctx.influx.alerts_measurement)),  # none there
        )

    assert asyncio.run(counts()) == (len(rows) - 2, 1, len(run.firing), 0)
