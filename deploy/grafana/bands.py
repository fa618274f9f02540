"""Threshold bands drawn on panels: ISPU, BMKG rain classes, river levels, noise limits.

Where an alert rule covers a metric, the rule's levels *are* the upper bands (so a panel
turns red exactly when the alert fires; a gauge with its own ``alert_levels`` in the registry
gets its own bands) and only the milder, never-alerted classes are
written here: ISPU Baik / Sedang, BMKG hujan ringan / sedang (daily). Noise has no alert
rule; its bands are the Indonesian ambient noise limits.

Sources: ISPU - Permen LHK P.14/MENLHK/SETJEN/KUM.1/7/2020; BMKG rainfall intensity
classes (hourly and daily); KepMenLH 48/1996 (noise: 55 dB(A) housing, 70 dB(A) trade).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from deploy.grafana.i18n import Lang, Text
from kotaflow.wire.alerts import Severity
from processors.alerting.model import Direction, Rule, RuleKind, RuleSet, SignalKind

SEVERITY_COLOURS = MappingProxyType(
    {
        Severity.INFO: "blue",
        Severity.WARNING: "yellow",
        Severity.MAJOR: "orange",
        Severity.CRITICAL: "red",
    }
)
ISPU_COLOURS = MappingProxyType(
    {
        "Baik": "green",
        "Sedang": "blue",
        "Tidak Sehat": "yellow",
        "Sangat Tidak Sehat": "red",
        "Berbahaya": "purple",  # ISPU's black, visible on Grafana's dark theme
    }
)


@dataclass(frozen=True, slots=True)
class Band:
    """From ``start`` (None: minus infinity) upwards, until the next band."""

    start: float | None
    colour: str
    label: Text


@dataclass(frozen=True, slots=True)
class Bands:
    bands: tuple[Band, ...]
    source: Text

    def describe(self, lang: Lang, unit: str) -> str:
        """A legend for the panel description: ``Baik < 15.6 ≤ Sedang < 55.5 ≤ …``."""
        parts = [self.bands[0].label(lang)]
        for band in self.bands[1:]:
            parts.append(f"{band.start:g} {unit}".strip())
            parts.append(band.label(lang))
        return f"{self.source(lang)}: " + " | ".join(parts)


NORMAL = Text("Normal", "Normal")
NO_RAIN = Text("Tidak hujan", "No rain")
LIGHT_RAIN = Text("Hujan ringan", "Light rain")
MODERATE_RAIN = Text("Hujan sedang", "Moderate rain")

_ISPU_LOWER = MappingProxyType(
    {
        # metric -> (Sedang starts at); Baik below. Upper classes come from the ISPU rules.
        "pm25": 15.6,
        "pm10": 50.1,
    }
)
_RAIN_LOWER = MappingProxyType(
    {
        # window -> lower BMKG classes; the alerted classes come from the rain rules.
        "1h": (Band(None, "transparent", NO_RAIN), Band(1.0, "green", LIGHT_RAIN)),
        "24h": (
            Band(None, "transparent", NO_RAIN),
            Band(0.5, "green", LIGHT_RAIN),
            Band(20.0, "blue", MODERATE_RAIN),
        ),
    }
)
NOISE = Bands(
    (
        Band(None, "green", Text("Di bawah baku mutu permukiman", "Below the housing limit")),
        Band(55.0, "yellow", Text("Di atas 55 dB(A) (permukiman)", "Above 55 dB(A) (housing)")),
        Band(70.0, "red", Text("Di atas 70 dB(A) (perdagangan)", "Above 70 dB(A) (trade)")),
    ),
    Text("Baku tingkat kebisingan KepMenLH 48/1996", "Noise limits KepMenLH 48/1996"),
)


def rule_for(
    rules: RuleSet,
    metric: str,
    types: Sequence[str],
    *,
    kind: RuleKind,
    window_ms: int | None = None,
    device: str | None = None,
) -> Rule | None:
    """The first levelled rule of ``kind`` watching ``metric`` on any of ``types``."""
    for rule in rules.rules:
        if rule.kind is not kind or rule.metric != metric:
            continue
        if window_ms is not None and rule.signal.window_ms != window_ms:
            continue
        scope = rule.scope
        if device is not None and (
            device in scope.exclude_devices or (scope.devices and device not in scope.devices)
        ):
            continue
        watched = set(types) - scope.exclude_types
        if watched and (not scope.types or scope.types & watched):
            return rule
    return None


def from_rule(rule: Rule, lower: Sequence[Band] = (), device: str | None = None) -> Bands:
    """The rule's levels (``device``'s own where the registry gives it some) as bands above
    ``lower`` (or above a green "Normal")."""
    base = list(lower) or [Band(None, "green", NORMAL)]
    levels = [
        Band(level.trigger, SEVERITY_COLOURS[level.severity], Text(level.name, level.name))
        for level in (rule.levels if device is None else rule.levels_for(device))
    ]
    title = Text(rule.title.get("id", rule.name), rule.title.get("en", rule.name))
    if rule.direction is Direction.BELOW:
        # Low is bad: the most severe colour at the bottom, normal above the mildest level.
        colours = [band.colour for band in levels]
        bottom = Band(None, colours[-1], levels[-1].label)
        steps = [
            Band(levels[i].start, colours[i - 1], levels[i - 1].label)
            for i in range(len(levels) - 1, 0, -1)
        ]
        return Bands((bottom, *steps, Band(levels[0].start, "green", NORMAL)), title)
    return Bands((*base, *levels), title)


def ispu(rules: RuleSet, metric: str) -> Bands | None:
    """ISPU categories for PM2.5 / PM10: Baik, Sedang, then the ISPU rule's levels."""
    rule = rule_for(rules, metric, ["air_quality"], kind=RuleKind.AGGREGATE)
    if rule is None or metric not in _ISPU_LOWER:
        return None
    lower = (
        Band(None, ISPU_COLOURS["Baik"], Text("Baik", "Good (Baik)")),
        Band(_ISPU_LOWER[metric], ISPU_COLOURS["Sedang"], Text("Sedang", "Moderate (Sedang)")),
    )
    bands = from_rule(rule, lower)
    recoloured = tuple(
        Band(b.start, ISPU_COLOURS.get(b.label.id, b.colour), b.label) for b in bands.bands
    )
    return Bands(recoloured, bands.source)


def rain(rules: RuleSet, window: str) -> Bands | None:
    """BMKG rain classes over ``window`` (``1h`` or ``24h``) of summed ``rain``."""
    window_ms = {"1h": 3_600_000, "24h": 86_400_000}[window]
    for rule in rules.rules:
        if (
            rule.kind is RuleKind.AGGREGATE
            and rule.metric == "rain"
            and rule.signal.kind is SignalKind.SUM
            and rule.signal.window_ms == window_ms
        ):
            return from_rule(rule, _RAIN_LOWER[window])
    return None


def for_metric(
    rules: RuleSet, metric: str, types: Sequence[str], device: str | None = None
) -> Bands | None:
    """Bands for a plain value panel of ``metric``: a threshold rule's, or noise limits."""
    if metric in ("laeq", "lamax"):
        return NOISE
    rule = rule_for(rules, metric, types, kind=RuleKind.THRESHOLD, device=device)
    return from_rule(rule, device=device) if rule is not None else None


def for_value(
    rules: RuleSet, metric: str, types: Sequence[str], device: str | None = None
) -> Bands | None:
    """The bands a single latest value is judged by (the city map's category).

    ISPU for PM, BMKG hourly classes for rain intensity (mm/h), else :func:`for_metric`.
    """
    if metric == "rain_rate":
        return rain(rules, "1h")
    return ispu(rules, metric) or for_metric(rules, metric, types, device)
