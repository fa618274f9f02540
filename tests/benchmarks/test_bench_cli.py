"""``kotaflow bench`` wiring and its result schema, without services (no timing asserted)."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.bridge_bench import histogram_latency
from benchmarks.e2e_bench import bench_registry
from benchmarks.procstats import ProcessCost
from benchmarks.report import (
    SCHEMA,
    Figure,
    Latency,
    ScenarioResult,
    Stopwatch,
    Target,
    write_result,
)
from benchmarks.scenarios import SCENARIOS, Scenario, UnknownScenarioError, chosen
from devices.fleet import load_fleet
from kotaflow.settings import Settings
from kotaflow.wire.raw import DeviceKeyKind


def test_every_scenario_is_registered_in_run_order() -> None:
    assert [s.name for s in chosen([])] == [
        "bridge",
        "bridge-steady",
        "process",
        "late",
        "e2e",
        "alert",
        "public",
        "startup",
        "peers",
    ]


def test_named_scenarios_run_in_registry_order_once() -> None:
    assert [s.name for s in chosen(["alert", "bridge", "alert"])] == ["bridge", "alert"]


def test_unknown_scenario_is_refused_with_the_known_names() -> None:
    with pytest.raises(
        UnknownScenarioError,
        match="known: bridge, bridge-steady, process, late, e2e, alert, public, startup, peers",
    ):
        chosen(["bridge", "nope"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_each_scenario_module_offers_an_async_runner(scenario: Scenario) -> None:
    runner = scenario.load()
    assert inspect.iscoroutinefunction(runner)
    assert list(inspect.signature(runner).parameters) == ["settings", "quick"]


def _result(quick: bool) -> ScenarioResult:
    return ScenarioResult(
        "bridge",
        quick,
        {"messages": 10},
        throughput=[Figure("drain", 12_000.0, "msg/s")],
        latency=Latency.of("receive -> ack", [5.0, 7.0, 9.0]),
        processes=[ProcessCost("kotaflow bridge", 70.5, 1.25)],
        targets=[
            Target("drain", 12_000.0, 10_000, "msg/s"),
            Target("kotaflow bridge", 70.5, 100, "MB", "<="),
            Target("latency", None, 1000, "ms", "<="),
        ],
        notes=["a note"],
    )


def test_bench_runs_the_chosen_scenarios_prints_tables_and_writes_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[tuple[str, bool]] = []

    def fake_load(self: Scenario):  # type: ignore[no-untyped-def]
        async def run(settings: Settings, quick: bool) -> ScenarioResult:
            ran.append((self.name, quick))
            result = _result(quick)
            result.scenario = self.name
            return result

        return run

    monkeypatch.setattr(Scenario, "load", fake_load)
    from kotaflow.cli import app

    out = CliRunner().invoke(app, ["bench", "--quick", "--results", str(tmp_path), "e2e", "bridge"])
    assert out.exit_code == 0, out.output
    assert ran == [("bridge", True), ("e2e", True)]
    assert "kotaflow bench bridge --quick" in out.output
    assert "met" in out.output
    assert "n/a" in out.output
    files = sorted(tmp_path.glob("*.json"))
    assert [json.loads(f.read_text(encoding="utf-8"))["scenario"] for f in files] == [
        "bridge",
        "e2e",
    ]


def test_a_failing_scenario_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fake_load(self: Scenario):  # type: ignore[no-untyped-def]
        async def run(settings: Settings, quick: bool) -> ScenarioResult:
            if self.name == "bridge":
                raise RuntimeError("mosquitto_sub not found")
            return _result(quick)

        return run

    monkeypatch.setattr(Scenario, "load", fake_load)
    from kotaflow.cli import app

    out = CliRunner().invoke(app, ["bench", "--results", str(tmp_path), "bridge", "alert"])
    assert out.exit_code == 1
    assert "mosquitto_sub not found" in out.output
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_result_json_follows_the_schema(tmp_path: Path) -> None:
    path = write_result(_result(quick=True), tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == SCHEMA
    assert set(data) == {
        "schema", "scenario", "quick", "started_at", "duration_s", "machine", "parameters",
        "throughput", "latency", "processes", "targets", "notes",
    }  # fmt: skip
    assert data["throughput"] == [{"name": "drain", "value": 12_000.0, "unit": "msg/s"}]
    assert data["latency"] == {
        "what": "receive -> ack", "samples": 3, "p50_ms": 7.0, "p95_ms": 9.0, "p99_ms": 9.0,
        "max_ms": 9.0,
    }  # fmt: skip
    assert data["processes"] == [{"name": "kotaflow bridge", "peak_rss_mb": 70.5, "cpu_s": 1.25}]
    assert [t["met"] for t in data["targets"]] == [True, True, None]
    assert data["targets"][1]["comparison"] == "<="


def test_a_stamped_result_records_the_machines_load_and_python_speed() -> None:
    result = Stopwatch().stamp(_result(quick=True), elapsed_s=1.0)
    machine = result.machine
    assert machine["cpus"] == os.cpu_count()
    assert len(machine["load_avg_start"]) == 3
    assert machine["python_speed_start"] > 0
    assert machine["python_speed_end"] > 0


def test_percentiles_are_nearest_rank() -> None:
    lat = Latency.of("x", [float(v) for v in range(100, 0, -1)])
    assert lat is not None
    assert (lat.p50_ms, lat.p95_ms, lat.p99_ms, lat.max_ms) == (50.0, 95.0, 99.0, 100.0)
    assert Latency.of("x", []) is None


def test_histogram_percentiles_are_bucket_upper_bounds() -> None:
    name = "kotaflow_bridge_ack_latency_seconds"
    metrics = {
        f'{name}_bucket{{le="0.01"}}': 50.0,
        f'{name}_bucket{{le="0.1"}}': 96.0,
        f'{name}_bucket{{le="1.0"}}': 100.0,
        f'{name}_bucket{{le="+Inf"}}': 100.0,
        f"{name}_count": 100.0,
    }
    lat = histogram_latency(metrics, name, "ack")
    assert lat is not None
    assert (lat.p50_ms, lat.p95_ms, lat.p99_ms, lat.max_ms) == (10.0, 100.0, 1000.0, 1000.0)


def test_e2e_registry_copy_renames_every_device_key(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    enabled = bench_registry(Settings(), "ab12cd", path)
    copy = load_fleet(registry_file=path).registry
    original = load_fleet().registry
    assert len(copy) == len(original)
    assert enabled == [d.id for d in copy if d.enabled]
    for mine, theirs in zip(copy, original, strict=True):
        assert mine.id == f"bab12cd-{theirs.id}"
        assert original.find(mine.ns_device_id, DeviceKeyKind.NS_DEVICE_ID) is None
        if theirs.dev_eui:
            assert mine.dev_eui != theirs.dev_eui
            assert original.find(mine.dev_eui or "", DeviceKeyKind.DEV_EUI) is None
