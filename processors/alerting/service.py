"""``kotaflow alert``: the evaluator and its outbox workers in one process.

:func:`build` validates everything once, at start (rule file against the catalogue and the
configured receivers; no network I/O), and :meth:`AlertService.run` runs two things until
``stop`` is set: the alerting stage in :class:`processors.runtime.stage_loop.StageLoop`
(consumer group ``alerting.group_id`` on ``kotaflow.readings``; scale out by starting more
processes, up to one per partition, sharing the state file) and the
:class:`~.dispatch.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from devices.fleet import load_fleet
from devices.sourcefile import DeviceFileError
from kotaflow.alerting_settings import ConsoleReceiver, Language
from kotaflow.settings import Settings
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels import build_channel
from processors.alerting.dispatch import Destination, Dispatcher, ReceiverDestination
from processors.alerting.engine import Engine
from processors.alerting.model import RuleSet
from processors.alerting.routing import CONSOLE_DESTINATION
from processors.alerting.rules import load_rules, rules_file_of
from processors.alerting.sinks import InfluxAlerts, KafkaSink, alerts_sink, deadletter_sink
from processors.alerting.stage import AlertStage
from processors.alerting.state_store import (
    DEADLETTER_DESTINATION,
    INFLUX_DESTINATION,
    KAFKA_DESTINATION,
    AlertStore,
    OutboxItem,
)
from processors.alerting.templates import render
from processors.runtime.health import Health
from processors.runtime.retry import Backoff
from processors.runtime.stage_loop import StageLoop, instance_name

log = logging.getLogger("kotaflow.alerting")

DELIVERED_KEPT_MS = 7 * 24 * 3600 * 1000
"""Delivered outbox rows are kept a week (``alerts outbox`` shows them), then purged."""


def load_checked_rules(settings: Settings) -> tuple[RuleSet, Mapping[str, str]]:
    """The rule set, cross-checked against the catalogue and receivers; device names."""
    cfg = settings.alerting
    try:
        fleet = load_fleet(settings)
    except DeviceFileError as err:
        log.warning(
            "device files unusable: rules not checked against them", extra={"err": str(err)}
        )
        return load_rules(rules_file_of(cfg), receivers=set(cfg.receivers) or None), {}
    names = {device.id: device.name for device in fleet.registry}
    rules = load_rules(
        rules_file_of(cfg),
        metrics=fleet.catalogue.metrics,
        types=fleet.catalogue.types,
        receivers=set(cfg.receivers) or None,
    )
    return rules, names


@dataclass
class AlertService:
    settings: Settings
    store: AlertStore
    stage: AlertStage
    dispatcher: Dispatcher
    kafka: list[KafkaSink]
    influx: InfluxAlerts | None
    http: httpx.AsyncClient

    async def run(self, stop: asyncio.Event) -> None:
        now_ms = int(time.time() * 1000)
        self.store.purge_delivered(now_ms - DELIVERED_KEPT_MS)
        loop = StageLoop(self.stage, self.settings, Health(instance_name()))
        evaluator = asyncio.create_task(loop.run(stop), name="alert-evaluator")
        dispatcher = asyncio.create_task(self.dispatcher.run(stop), name="alert-dispatcher")
        try:
            done, _ = await asyncio.wait(
                [evaluator, dispatcher], return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                if task.exception() is not None:
                    log.error("alerting task failed", extra={"task": task.get_name()})
        finally:
            stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({evaluator, dispatcher}, timeout=10.0)
            for task in (evaluator, dispatcher):
                task.cancel()
            results = await asyncio.gather(evaluator, dispatcher, return_exceptions=True)
            await self.close()
        errors = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        if errors:
            raise errors[0]

    async def close(self) -> None:
        for sink in self.kafka:
            await sink.close()
        if self.influx is not None:
            await self.influx.close()
        await self.http.aclose()
        self.store.close()


def build(settings: Settings) -> AlertService:
    """Validate rules and receivers and wire the parts; call inside the event loop."""
    cfg = settings.alerting
    rules, names = load_checked_rules(settings)
    store = AlertStore(cfg.state_path(settings.stack.state_dir))
    http = httpx.AsyncClient()

    def annotate(event: AlertEvent) -> tuple[str, str]:
        message = render(
            event, Language.ID, names.get(event.device, event.device), cfg.dashboard_url
        )
        return message.title, message.text

    receivers = dict(cfg.receivers) or {CONSOLE_DESTINATION: ConsoleReceiver(kind="console")}
    destinations: list[Destination] = [
        ReceiverDestination(
            name, build_channel(receiver, http), receiver.language, names, cfg.dashboard_url
        )
        for name, receiver in receivers.items()
    ]
    client_id = f"kotaflow-alert-{instance_name()}"
    kafka = [alerts_sink(settings, client_id), deadletter_sink(settings, client_id)]
    destinations += kafka
    influx = InfluxAlerts(settings, annotate) if cfg.write_influx else None
    if influx is not None:
        destinations.append(influx)
    backoff = Backoff(initial_s=cfg.retry_initial_s, max_s=cfg.retry_max_s)
    owned: set[int] = set()
    dispatcher = Dispatcher(
        store, destinations, backoff, on_delivered=_log_delivered, owned=lambda: set(owned)
    )
    engine = Engine(
        rules,
        started_ms=int(time.time() * 1000),
        max_notify_age_ms=int(cfg.notify_max_age_s * 1000),
        caught_up=set(),
    )
    stage = AlertStage(settings, engine, store, queued=dispatcher.wake)
    stage.owned = owned  # the dispatcher reads the same set the stage keeps current
    if not cfg.receivers:
        log.warning("no alerting.receivers configured: notifications go to the terminal")
    return AlertService(settings, store, stage, dispatcher, kafka, influx, http)


async def run_alerting(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    await build(settings).run(stop)


def _log_delivered(destination: Destination, items: Sequence[OutboxItem], done_ms: int) -> None:
    if destination.name in (KAFKA_DESTINATION, INFLUX_DESTINATION, DEADLETTER_DESTINATION):
        return
    for item in items:
        log.info(
            "notification delivered",
            extra={
                "receiver": destination.name,
                "event": item.event_id,
                "queued_ms": done_ms - item.created_ms,
            },
        )
