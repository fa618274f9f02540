"""The local stack: which services it runs, in what order, and the up/down/status verbs.

Order matters: Mosquitto and Kafka carry messages, InfluxDB stores them. ``up`` installs and
starts in order, ``down`` stops in reverse.
"""

from __future__ import annotations

import shutil

from deploy.local.service import Report, Service, ServiceStatus
from kotaflow.settings import Settings


def build_services(settings: Settings) -> list[Service]:
    """One line per service; a test checks every service module is registered here."""
    services: list[Service] = []
    # Registered by the services' own modules as they land, e.g.:
    # services.append(Mosquitto(settings))
    return services


def up(settings: Settings, report: Report, only: set[str] | None = None) -> list[ServiceStatus]:
    chosen = [s for s in build_services(settings) if only is None or s.name in only]
    for service in chosen:
        service.install(report)
        service.start(report)
    return [service.status() for service in chosen]


def down(settings: Settings, report: Report, purge: bool = False) -> None:
    for service in reversed(build_services(settings)):
        service.stop(report)
    if purge and settings.stack.state_dir.exists():
        report(f"removing state directory {settings.stack.state_dir}")
        shutil.rmtree(settings.stack.state_dir)


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in build_services(settings)]
