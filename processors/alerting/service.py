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
from dataclasses import dataclass, field

import httpx
from aiohttp import web
from prometheus_client import start_http_server

from devices.fleet import Fleet, load_fleet
from devices.sourcefile import DeviceFileError
from devices.watch import FleetWatcher, follow
from kotaflow.alerting_settings import ConsoleReceiver, Language
from kotaflow.logs import ONE_LINE_EACH
from kotaflow.settings import Settings
from kotaflow.waiting import wait_or_stop
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.acklink import ack_app, link_maker
from processors.alerting.channels import build_channel
from processors.alerting.checks import ConfigProblemsError, Known, all_problems
from processors.alerting.dispatch import Destination, Dispatcher, ReceiverDestination
from processors.alerting.engine import Engine
from processors.alerting.metrics import AlertMetrics
from processors.alerting.model import RuleSet
from processors.alerting.routing import CONSOLE_DESTINATION
from processors.alerting.rules import RulesError, load_rules, rules_file_of, with_device_levels
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

REGISTRY_RETRY_S = 30.0
"""How often unusable device files are tried again (one error line each time)."""

DELIVERED_KEPT_MS = 7 * 24 * 3600 * 1000
"""Delivered outbox rows are kept a week (``alerts outbox`` shows them), then purged."""


def known_of(fleet: Fleet) -> Known:
    return Known(
        kecamatan=frozenset(d.kecamatan for d in fleet.registry),
        devices=frozenset(d.id for d in fleet.registry),
        types=frozenset(fleet.catalogue.types),
    )


@dataclass(frozen=True, slots=True)
class CheckedRules:
    rules: RuleSet
    """In force: the rule file with the devices' own levels (when the registry was usable)."""
    base: RuleSet
    """The rule file alone: the devices' levels are applied to it again on a registry change."""
    names: Mapping[str, str]
    """Device id -> name, for messages."""
    with_levels: bool
    """False when the device files were unusable at start: no device's own levels yet."""


def load_checked_rules(settings: Settings) -> CheckedRules:
    """The rule set with the devices' own levels, cross-checked against the catalogue, the
    registry, receivers and routes (:class:`ConfigProblemsError` lists what is wrong)."""
    cfg = settings.alerting
    try:
        fleet = load_fleet(settings)
    except DeviceFileError as err:
        log.error(
            "device files unusable: the alert rules run WITHOUT the devices' own levels "
            "(a gauge's alert_levels) until the registry is fixed",
            extra={"err": str(err)},
        )
        rules = load_rules(rules_file_of(cfg), receivers=set(cfg.receivers) or None)
        _raise_problems(all_problems(cfg, rules, None))
        return CheckedRules(rules, rules, {}, with_levels=False)
    names = {device.id: device.name for device in fleet.registry}
    base = load_rules(
        rules_file_of(cfg),
        metrics=fleet.catalogue.metrics,
        types=fleet.catalogue.types,
        receivers=set(cfg.receivers) or None,
    )
    rules = with_device_levels(base, fleet.registry)
    _raise_problems(all_problems(cfg, rules, known_of(fleet)))
    return CheckedRules(rules, base, names, with_levels=True)


def _raise_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigProblemsError(problems)


@dataclass
class AlertService:
    settings: Settings
    store: AlertStore
    stage: AlertStage
    dispatcher: Dispatcher
    kafka: list[KafkaSink]
    influx: InfluxAlerts | None
    http: httpx.AsyncClient
    health: Health = field(default_factory=lambda: Health(instance_name()))
    metrics: AlertMetrics = field(default_factory=AlertMetrics)
    """Registered with ``health``'s registry by :func:`build` (one metrics port)."""
    names: dict[str, str] = field(default_factory=dict)
    """Device names for messages, kept current with the registry (``devices.watch``)."""
    base_rules: RuleSet | None = None
    """The rule file without device levels; set: a registry change re-applies the levels."""
    with_levels: bool = True
    """Whether the devices' own levels are in force (False: device files unusable so far)."""

    async def run(self, stop: asyncio.Event) -> None:
        now_ms = int(time.time() * 1000)
        self.store.purge_delivered(now_ms - DELIVERED_KEPT_MS)
        endpoint = await self._start_ack_endpoint()
        loop = StageLoop(self.stage, self.settings, self.health)
        evaluator = asyncio.create_task(loop.run(stop), name="alert-evaluator")
        dispatcher = asyncio.create_task(self.dispatcher.run(stop), name="alert-dispatcher")
        registry = asyncio.create_task(self._follow_registry(stop), name="alert-registry")
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
            registry.cancel()
            await asyncio.gather(registry, return_exceptions=True)
            if endpoint is not None:
                await endpoint.cleanup()
            await self.close()
        errors = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        if errors:
            raise errors[0]

    async def _follow_registry(self, stop: asyncio.Event) -> None:
        """Registry changes take effect without a restart: device names in messages and
        each device's own alert levels (a new gauge, a level moved after a survey). Device
        files unusable at start are retried until they are usable (the rule file's levels
        hold meanwhile); a changed registry whose levels are wrong is refused, keeping the
        levels in force."""
        watcher = None
        while watcher is None and not stop.is_set():
            try:
                watcher = FleetWatcher(self.settings)
            except DeviceFileError as err:
                log.error(
                    "device files still unusable: alert rules run without the devices' own "
                    "levels; retrying in %.0f s",
                    REGISTRY_RETRY_S,
                    extra={"err": str(err), **ONE_LINE_EACH},
                )
                await wait_or_stop(stop, REGISTRY_RETRY_S)
        if watcher is None:
            return
        if not self.with_levels:
            self.registry_changed(watcher.fleet)
        await follow(watcher, self.registry_changed, stop)

    def registry_changed(self, fleet: Fleet) -> None:
        """Names and device levels from ``fleet`` (the registry now in force)."""
        self.names.clear()
        self.names.update({d.id: d.name for d in fleet.registry})
        if self.base_rules is None:
            return
        try:
            rules = with_device_levels(self.base_rules, fleet.registry)
        except RulesError as err:
            log.error(
                "the registry's alert levels are invalid: keeping the levels in force",
                extra={"problems": [str(p) for p in err.problems]},
            )
            return
        self.stage.engine.use_rules(rules)
        if not self.with_levels:
            log.info("device files usable again: the devices' own alert levels are in force")
        self.with_levels = True

    async def _start_ack_endpoint(self) -> web.AppRunner | None:
        cfg = self.settings.alerting
        if not (cfg.ack_port and cfg.ack_secret):
            return None
        runner = web.AppRunner(ack_app(self.store, cfg.ack_secret.get_secret_value()))
        await runner.setup()
        await web.TCPSite(runner, cfg.ack_host, cfg.ack_port).start()
        log.info("acknowledge endpoint", extra={"host": cfg.ack_host, "port": cfg.ack_port})
        return runner

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
    checked = load_checked_rules(settings)
    rules = checked.rules
    names = dict(checked.names)  # one dict, shared by every message maker, kept current
    store = AlertStore(cfg.state_path(settings.stack.state_dir))
    http = httpx.AsyncClient()

    if cfg.dashboard_url is None:
        log.warning("alerting.dashboard_url is not set: alert messages carry no dashboard link")
    health = Health(instance_name())
    metrics = AlertMetrics(health.registry)
    port = cfg.metrics_port or settings.metrics_port
    if port:
        start_http_server(port, registry=health.registry)

    def annotate(event: AlertEvent) -> tuple[str, str]:
        message = render(
            event, Language.ID, names.get(event.device, event.device), cfg.dashboard_url
        )
        return message.title, message.text

    receivers = dict(cfg.receivers) or {CONSOLE_DESTINATION: ConsoleReceiver(kind="console")}
    secret, base = cfg.ack_secret, cfg.ack_url
    destinations: list[Destination] = [
        ReceiverDestination(
            name,
            build_channel(receiver, http),
            receiver.language,
            names,
            cfg.dashboard_url,
            link_maker(secret.get_secret_value(), base, name) if secret and base else None,
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
        store,
        destinations,
        backoff,
        on_delivered=_log_delivered,
        owned=lambda: set(owned),
        metrics=metrics,
    )
    engine = Engine(
        rules,
        started_ms=int(time.time() * 1000),
        max_notify_age_ms=int(cfg.notify_max_age_s * 1000),
        caught_up=set(),
    )
    stage = AlertStage(settings, engine, store, queued=dispatcher.wake, metrics=metrics)
    stage.owned = owned  # the dispatcher reads the same set the stage keeps current
    if not cfg.receivers:
        log.warning("no alerting.receivers configured: notifications go to the terminal")
    return AlertService(
        settings,
        store,
        stage,
        dispatcher,
        kafka,
        influx,
        http,
        health=health,
        metrics=metrics,
        names=names,
        base_rules=checked.base,
        with_levels=checked.with_levels,
    )


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
