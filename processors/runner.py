"""Run one or more stages in one process, on one asyncio loop, until told to stop.

Each stage gets its own consumer (its own group) in its own task; they share one Kafka
producer and one :class:`~processors.runtime.health.Health`. Each stage that touches
InfluxDB has a client with its own token (``store``, ``aggregate``; the health figures
``health``), so a stage can do no more in InfluxDB than its job needs
(``processors/runtime/influx_token.py``). SIGTERM/SIGINT set the stop event: every stage
flushes, commits and closes before the process exits. If one stage fails, the others are
stopped too and the error propagates (exit non-zero; a supervisor restarts the process,
which resumes from the last commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from enum import StrEnum

from prometheus_client import start_http_server

from kotaflow.settings import Settings
from kotaflow.waiting import wait_or_stop
from processors.aggregate.stage import AggregateStage
from processors.runtime.clients import REAL_CLIENTS, InfluxWriter, StageClients
from processors.runtime.health import Health
from processors.runtime.influx import AGGREGATE_ROLE, HEALTH_ROLE, STORE_ROLE
from processors.runtime.kafka_output import KafkaOutput
from processors.runtime.stage_loop import Stage, StageLoop, instance_name
from processors.runtime.status_file import StatusFile, remove_dead, status_path
from processors.store import StoreStage
from processors.validate import ValidateStage

log = logging.getLogger("kotaflow.processors")


class StageName(StrEnum):
    VALIDATE = "validate"
    STORE = "store"
    AGGREGATE = "aggregate"
    ALL = "all"


def chosen(names: list[StageName]) -> list[StageName]:
    """The concrete stages asked for, in data-flow order (``all``: every one)."""
    wanted = set(names) or {StageName.ALL}
    if StageName.ALL in wanted:
        wanted = {StageName.VALIDATE, StageName.STORE, StageName.AGGREGATE}
    order = (StageName.VALIDATE, StageName.STORE, StageName.AGGREGATE)
    return [name for name in order if name in wanted]


async def run_stages(
    settings: Settings,
    names: list[StageName],
    stop: asyncio.Event | None = None,
    health: Health | None = None,
    signals: bool = True,
    clients: StageClients = REAL_CLIENTS,
) -> None:
    """Run the chosen stages until ``stop`` is set (or, with ``signals``, SIGTERM/SIGINT);
    their Kafka and InfluxDB clients come from ``clients``."""
    stop = stop or asyncio.Event()
    health = health or Health(instance_name())
    if signals:
        _install_signals(stop)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=health.registry)
    output = KafkaOutput(settings, health, f"kotaflow-process-{instance_name()}", clients)
    names = chosen(names)
    async with contextlib.AsyncExitStack() as resources:
        sinks: dict[tuple[str, str], InfluxWriter] = {}

        async def influx_for(role: str) -> InfluxWriter:
            """A client with ``role``'s token (least privilege per stage); roles that resolve
            to the same tokens (one configured token for all) share one."""
            sink = clients.influx(settings, role, gauge=health, on_retry=health.retry)
            tokens = sink.tokens()
            if tokens not in sinks:
                sinks[tokens] = await resources.enter_async_context(sink)
            return sinks[tokens]

        stages: list[Stage] = []
        for name in names:
            if name is StageName.VALIDATE:
                stages.append(ValidateStage(settings, health, output))
            elif name is StageName.STORE:
                stages.append(StoreStage(settings, health, output, await influx_for(STORE_ROLE)))
            elif name is StageName.AGGREGATE:
                aggregate_influx = await influx_for(AGGREGATE_ROLE)
                stages.append(AggregateStage(settings, health, output, aggregate_influx, clients))
        if signals:
            _reload_on_hangup([s for s in stages if isinstance(s, ValidateStage)])
        influx = None
        if StageName.STORE in names or StageName.AGGREGATE in names:
            influx = await influx_for(HEALTH_ROLE)  # the health figures' own token
        loops = [StageLoop(stage, settings, health, clients) for stage in stages]
        tune_gc()
        tasks = [asyncio.create_task(loop.run(stop), name=loop.stage.name) for loop in loops]
        remove_dead(settings)
        status = StatusFile(status_path(settings, health.instance), health)
        health.on_status_change.append(status.write)
        tasks.append(asyncio.create_task(_report_health(settings, health, influx, status, stop)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    log.error("stage failed", extra={"stage": task.get_name()})
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def _report_health(
    settings: Settings,
    health: Health,
    influx: InfluxWriter | None,
    status: StatusFile,
    stop: asyncio.Event,
) -> None:
    """Every interval: the status file, and the health figures to InfluxDB (best effort,
    never blocks the stages)."""
    cfg = settings.processing.health
    bucket = cfg.bucket or settings.influxdb.rollups_bucket
    try:
        while not stop.is_set():
            status.write()
            await wait_or_stop(stop, cfg.interval_s)
            lines = health.lines(cfg.measurement, time.time_ns() // 1_000_000)
            if lines and influx is not None:
                try:
                    await asyncio.wait_for(influx.write(bucket, lines, "health"), cfg.interval_s)
                except TimeoutError:
                    log.warning("health figures not written: InfluxDB is slow, down or refusing")
    finally:
        status.remove()


def tune_gc() -> None:
    """Fewer cyclic-GC passes: the hot path allocates many short-lived objects and makes
    no cycles, and the default gen-0 threshold (700) cost about a fifth of the CPU of a
    backlog drain. Objects that exist at start (fleet, catalogue, clients) are frozen out
    of collection altogether."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _reload_on_hangup(stages: list[ValidateStage]) -> None:
    """SIGHUP: re-read the registry and catalogue now (they are also watched)."""
    if not stages:
        return

    def hangup() -> None:
        for stage in stages:
            stage.request_reload()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, hangup)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
