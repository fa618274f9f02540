"""The local stack: which services it runs, in what order, and the up/down/status verbs.

Order matters: Mosquitto and Kafka carry messages, InfluxDB stores them. ``up`` installs and
starts in order, ``down`` stops in reverse. Several people (and test sessions) may share one
state directory, so ``up`` and ``down`` hold a lock on it: a second caller waits, then finds
the services running and leaves them be.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from deploy.local.influxdb import InfluxDB
from deploy.local.kafka import Kafka
from deploy.local.mosquitto import Mosquitto
from deploy.local.service import Report, Service, ServiceStatus, exclusive
from kotaflow.settings import Settings


def build_services(settings: Settings) -> list[Service]:
    """One line per service; a test checks every service module is registered here."""
    services: list[Service] = []
    services.append(Mosquitto(settings))
    services.append(Kafka(settings))
    services.append(InfluxDB(settings))
    return services


def up(settings: Settings, report: Report, only: set[str] | None = None) -> list[ServiceStatus]:
    chosen = [s for s in build_services(settings) if only is None or s.name in only]
    with _stack_lock(settings, report):
        for service in chosen:
            service.install(report)
            service.start(report)
    return [service.status() for service in chosen]


def down(settings: Settings, report: Report, purge: bool = False) -> None:
    with _stack_lock(settings, report):
        for service in reversed(build_services(settings)):
            service.stop(report)
        if purge:
            report(f"removing state directory {settings.stack.state_dir}")
            shutil.rmtree(settings.stack.state_dir)


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in build_services(settings)]


@contextmanager
def _stack_lock(settings: Settings, report: Report) -> Iterator[None]:
    """Serialise ``up``/``down`` on one state directory (released if the process dies)."""
    lock_path = settings.stack.state_dir / "stack.lock"
    with exclusive(lock_path, report, "waiting for another `kotaflow stack up/down` to finish"):
        yield
