"""Acceptance, end to end from ``kotaflow simulate`` with faults: simulator -> Mosquitto ->
``kotaflow bridge`` -> Kafka -> ``kotaflow process`` -> InfluxDB, every part a real process.
Every valid reading the simulator's manifest promises is stored exactly once; faulty and
duplicate messages add nothing."""

from __future__ import annotations

import pytest

from benchmarks.e2e_bench import measure
from kotaflow.settings import Settings

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

FAULTS = "malformed=0.03,out_of_range=0.03,duplicate=0.03,skew=0.02"
"""Faults whose readings must never be stored (late readings land outside the run's window
the count looks at, so they are left to the processors' own tests)."""


async def test_simulated_traffic_with_faults_is_stored_exactly_once(stack: Settings) -> None:
    run = await measure(stack, rate=300.0, duration_s=8.0, faults=FAULTS)
    kinds = run.summary["kinds"]
    assert run.expected > 0
    assert all(kinds[kind]["messages"] > 0 for kind in ("malformed", "out_of_range", "duplicate"))
    assert run.stored == run.expected, f"{run.stored} stored, {run.expected} valid sent"
