"""Compiled alert rules: plain frozen dataclasses the engine evaluates on the hot path.

Every rule kind reduces to the same shape: a *signal* computed from one device's readings of
one metric (the latest value, an aggregate over a sliding window, or the change over a
window) compared with ordered *levels* (e.g. Waspada < Siaga < Awas). A level is entered when
the signal reaches its ``trigger`` and has stayed there for ``for_ms``; it is left only when
the signal crosses ``clear`` (hysteresis). No-data rules have one level and fire on the
wall-clock tick when a device has sent nothing for ``silent_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from kotaflow.wire.alerts import Severity


class RuleKind(StrEnum):
    THRESHOLD = "threshold"
    RATE = "rate"
    AGGREGATE = "aggregate"
    NODATA = "nodata"


class SignalKind(StrEnum):
    """What is compared with the levels."""

    VALUE = "value"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    RISE = "rise"
    """Latest value minus the lowest in the window (0 when falling)."""
    FALL = "fall"
    """Highest value in the window minus the latest (0 when rising)."""


class Direction(StrEnum):
    ABOVE = "above"
    """Levels trigger at or above their value (``at_least``), clear below ``clear_below``."""
    BELOW = "below"
    """Levels trigger at or below their value (``at_most``), clear above ``clear_above``."""


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    trigger: float
    clear: float
    for_ms: int
    severity: Severity

    def reached(self, value: float, direction: Direction) -> bool:
        return value >= self.trigger if direction is Direction.ABOVE else value <= self.trigger

    def holds(self, value: float, direction: Direction) -> bool:
        """Still in this level (hysteresis): not yet past the clear value."""
        return value >= self.clear if direction is Direction.ABOVE else value <= self.clear


@dataclass(frozen=True, slots=True)
class Signal:
    kind: SignalKind
    window_ms: int = 0


@dataclass(frozen=True, slots=True)
class Scope:
    """Which devices a rule watches; an empty set means 'any'."""

    types: frozenset[str] = frozenset()
    kecamatan: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    exclude_devices: frozenset[str] = frozenset()
    exclude_types: frozenset[str] = frozenset()

    def matches(self, device: str, type_: str, kecamatan: str) -> bool:
        return (
            device not in self.exclude_devices
            and type_ not in self.exclude_types
            and (not self.types or type_ in self.types)
            and (not self.kecamatan or kecamatan in self.kecamatan)
            and (not self.devices or device in self.devices)
        )


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: RuleKind
    title: Mapping[str, str]
    """Language code -> short human title, e.g. ``{"id": "Tinggi muka air", ...}``."""
    metric: str | None
    """None only for a no-data rule that watches every metric of a device."""
    scope: Scope
    signal: Signal
    direction: Direction
    levels: tuple[Level, ...]
    """Ordered from the mildest to the most severe."""
    labels: Mapping[str, str]
    receivers: tuple[str, ...]
    repeat_ms: int
    """Remind while firing this often; 0 never."""
    silent_ms: int = 0
    """No-data rules only: fire after this long without a reading."""
    device_levels: Mapping[str, tuple[Level, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Device id -> its own levels (the registry's ``alert_levels``), same direction."""

    def levels_for(self, device: str) -> tuple[Level, ...]:
        return self.device_levels.get(device, self.levels)

    def level_names(self) -> set[str]:
        """Every level name this rule can report, its own and its devices'."""
        names = {level.name for level in self.levels}
        for levels in self.device_levels.values():
            names |= {level.name for level in levels}
        return names

    def applies(self, device: str, type_: str, kecamatan: str, metric: str) -> bool:
        return (self.metric is None or self.metric == metric) and self.scope.matches(
            device, type_, kecamatan
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str

    def by_name(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    def window_ms(self, metric: str) -> int:
        """The longest window any rule needs over ``metric`` (how much history to keep)."""
        return max(
            (r.signal.window_ms for r in self.rules if r.metric == metric),
            default=0,
        )

    def receivers(self) -> set[str]:
        return {name for rule in self.rules for name in rule.receivers}
