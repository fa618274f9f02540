"""Which devices and metrics ``kotaflow public`` may show.

Default: environment and hazard data are public, infrastructure (water meters, streetlights)
is not; a device's ``public`` flag in the registry overrides its type. Device health
(battery) is never published. Disabled devices are left out.

Alert rules: a rule is public when it has a ``hazard`` label (floods, rain, air), unless its
``public`` label says ``"false"`` (or ``"true"`` for one without); device-health rules
(silence, battery) have none and stay internal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devices.catalogue import Metric
from devices.fleet import Fleet
from devices.registry import Device
from processors.alerting.model import Rule, RuleKind, RuleSet

PUBLIC_TYPES = frozenset({"air_quality", "weather", "rain_gauge", "river_level", "noise"})
PRIVATE_METRICS = frozenset({"battery"})


@dataclass(frozen=True, slots=True)
class PublicDevice:
    device: Device
    metrics: Mapping[str, Metric]
    """The metrics published for it (its type's, less device health)."""


def is_public(device: Device) -> bool:
    if not device.enabled:
        return False
    return device.public if device.public is not None else device.type in PUBLIC_TYPES


def public_devices(fleet: Fleet) -> tuple[PublicDevice, ...]:
    """The public devices of the fleet, in registry order."""
    return tuple(
        PublicDevice(
            device,
            {m: spec for m, spec in fleet.metrics_of(device).items() if m not in PRIVATE_METRICS},
        )
        for device in fleet.registry
        if is_public(device)
    )


def is_public_rule(rule: Rule) -> bool:
    if rule.kind is RuleKind.NODATA:
        return False
    marked = rule.labels.get("public")
    return marked.lower() == "true" if marked is not None else "hazard" in rule.labels


def public_rules(rules: RuleSet) -> dict[str, Rule]:
    return {rule.name: rule for rule in rules.rules if is_public_rule(rule)}
