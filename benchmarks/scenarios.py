"""The scenarios of ``kotaflow bench``, one line each, in the order they run.

A scenario is ``async def scenario(settings, quick) -> ScenarioResult`` in its module. The
module is imported only when the scenario runs, so ``kotaflow bench --help`` stays quick
and each scenario loads only what it measures.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, cast

from benchmarks.report import ScenarioResult
from kotaflow.settings import Settings

Runner = Callable[[Settings, bool], Coroutine[Any, Any, ScenarioResult]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    module: str
    summary: str

    def load(self) -> Runner:
        return cast(Runner, importlib.import_module(self.module).scenario)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("bridge", "benchmarks.bridge_bench", "MQTT -> Kafka next to mosquitto_sub"),
    Scenario("bridge-steady", "benchmarks.bridge_steady", "bridge CPU per message at low rates"),
    Scenario("process", "benchmarks.processors_throughput", "Kafka backlog -> InfluxDB"),
    Scenario("late", "benchmarks.late_bench", "a day of late readings -> corrections"),
    Scenario("e2e", "benchmarks.e2e_bench", "devices -> InfluxDB at 2,000 readings/s"),
    Scenario("alert", "benchmarks.alert_bench", "threshold crossing -> webhook"),
    Scenario("public", "benchmarks.public_bench", "wrk on the public page -> InfluxDB queries"),
    Scenario("startup", "benchmarks.startup_bench", "process and bridge: start to first write"),
    Scenario("peers", "benchmarks.peers.scenario", "kotaflow beside Telegraf and Quix Streams"),
)


class UnknownScenarioError(ValueError):
    """A scenario name that is not in :data:`SCENARIOS`."""


def chosen(names: Iterable[str]) -> list[Scenario]:
    """The scenarios named (all when none), in :data:`SCENARIOS` order, each once."""
    wanted = set(names)
    unknown = wanted - {s.name for s in SCENARIOS}
    if unknown:
        known = ", ".join(s.name for s in SCENARIOS)
        names = ", ".join(sorted(unknown))
        raise UnknownScenarioError(f"unknown scenario {names} (known: {known})")
    return [s for s in SCENARIOS if not wanted or s.name in wanted]
