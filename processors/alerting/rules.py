"""The alert rule file (YAML, version 1): schema, validation with file:line errors, compiling.

A rule file is edited by hand, so every problem is reported with file, line, field path and
reason (``kotaflow alerts check FILE``), all of them at once. Checks beyond the schema:
levels ordered from mild to severe with their clear value on the safe side (hysteresis),
unique names, metrics and device types known to the catalogue, receivers known to the
settings. Example::

    version: 1
    defaults: {repeat: 4h}
    rules:
      - name: river_level
        kind: threshold            # threshold | rate | aggregate | nodata
        title: {id: Tinggi muka air sungai, en: River level}
        metric: water_level
        scope: {types: [river_level], kecamatan: [Reok]}   # also devices, exclude_devices,
                                                           # exclude_types
        levels:
          - {name: Waspada, at_least: 150, clear_below: 140, for: 2m, severity: warning}
          - {name: Siaga, at_least: 250, clear_below: 240, severity: major}
        labels: {team: bpbd}
        receivers: [bpbd-telegram]
      - name: river_rising_fast
        kind: rate
        metric: water_level
        change: rise               # rise | fall
        over: 15m
        levels: [{name: Naik cepat, at_least: 30, clear_below: 15}]
      - name: rain_1h
        kind: aggregate
        metric: rain
        function: sum              # sum | avg | min | max
        over: 1h
        levels: [{name: Lebat, at_least: 10, clear_below: 8}]
      - name: device_silent
        kind: nodata
        for: 30m
        severity: warning

Durations are written ``90s``, ``15m``, ``1h``, ``1d`` (or a number of seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from devices.registry import Registry
from devices.sourcefile import FieldPath, Problem, SourceFile, pydantic_problems, read_yaml
from kotaflow.alerting_settings import AlertingSettings, Language
from kotaflow.durations import Duration
from kotaflow.wire.alerts import Severity
from processors.alerting.model import (
    Direction,
    Level,
    Rule,
    RuleKind,
    RuleSet,
    Scope,
    Signal,
    SignalKind,
)

PACKAGED_RULES = Path(__file__).with_name("rules") / "manggarai.yaml"


def rules_file_of(settings: AlertingSettings) -> Path:
    """The rule file the settings name, else the packaged Manggarai rules."""
    return settings.rules_file or PACKAGED_RULES


MAX_WINDOW = timedelta(days=7)
log = logging.getLogger("kotaflow.alerting.rules")


class RulesError(ValueError):
    """A rule file is invalid; ``problems`` lists every finding with file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LevelSpec(_Strict):
    name: str = Field(min_length=1, max_length=40)
    at_least: float | None = None
    at_most: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _one_direction(self) -> LevelSpec:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least (alert when high) or at_most (when low)")
        if self.at_least is not None:
            if self.clear_above is not None:
                raise ValueError("an at_least level clears with clear_below, not clear_above")
            if self.clear_below is not None and self.clear_below > self.at_least:
                raise ValueError("clear_below must not be above at_least (hysteresis)")
        if self.at_most is not None:
            if self.clear_below is not None:
                raise ValueError("an at_most level clears with clear_above, not clear_below")
            if self.clear_above is not None and self.clear_above < self.at_most:
                raise ValueError("clear_above must not be below at_most (hysteresis)")
        return self

    def compile(self) -> tuple[Direction, Level]:
        if self.at_least is not None:
            clear = self.at_least if self.clear_below is None else self.clear_below
            level = Level(self.name, self.at_least, clear, _ms(self.for_), self.severity)
            return Direction.ABOVE, level
        assert self.at_most is not None
        clear = self.at_most if self.clear_above is None else self.clear_above
        return Direction.BELOW, Level(self.name, self.at_most, clear, _ms(self.for_), self.severity)


class ScopeSpec(_Strict):
    types: list[str] = []
    kecamatan: list[str] = []
    devices: list[str] = []
    exclude_devices: list[str] = []
    exclude_types: list[str] = []


class _RuleSpec(_Strict):
    name: Name
    title: dict[Language, Annotated[str, Field(min_length=1)]] = {}
    description: str = ""
    scope: ScopeSpec = ScopeSpec()
    labels: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], str] = {}
    receivers: list[str] = []
    repeat: Duration | None = None


class _LevelledSpec(_RuleSpec):
    metric: Name
    levels: list[LevelSpec] = Field(min_length=1)


class ThresholdSpec(_LevelledSpec):
    kind: Literal["threshold"]


class RateSpec(_LevelledSpec):
    kind: Literal["rate"]
    change: Literal["rise", "fall"]
    over: Duration


class AggregateSpec(_LevelledSpec):
    kind: Literal["aggregate"]
    function: Literal["sum", "avg", "min", "max"]
    over: Duration


class NoDataSpec(_RuleSpec):
    kind: Literal["nodata"]
    metric: Name | None = None
    for_: Duration = Field(alias="for")
    level: str = Field("Tidak ada data", min_length=1, max_length=40)
    severity: Severity = Severity.WARNING


RuleSpec = Annotated[
    ThresholdSpec | RateSpec | AggregateSpec | NoDataSpec, Field(discriminator="kind")
]


_LEVELS = TypeAdapter(list[LevelSpec])


class DefaultsSpec(_Strict):
    repeat: Duration = timedelta(hours=4)


class RulesFileSpec(_Strict):
    version: Literal[1]
    defaults: DefaultsSpec = DefaultsSpec()
    rules: list[RuleSpec] = Field(min_length=1)


def load_rules(
    path: Path,
    *,
    metrics: Collection[str] | None = None,
    types: Collection[str] | None = None,
    receivers: Collection[str] | None = None,
) -> RuleSet:
    """Read, validate and compile a rule file; :class:`RulesError` lists every problem.

    ``metrics`` / ``types`` (from the catalogue) and ``receivers`` (from the settings) turn on
    the cross-checks; None skips that check.
    """
    try:
        source = read_yaml(path)
    except ValueError as err:  # unreadable or not YAML: DeviceFileError carries problems
        raise RulesError(list(getattr(err, "problems", [])) or [_file_problem(path, err)]) from None
    ruleset, problems = check_rules(source, metrics=metrics, types=types, receivers=receivers)
    if ruleset is None:
        raise RulesError(problems)
    return ruleset


def check_rules(
    source: SourceFile,
    *,
    metrics: Collection[str] | None = None,
    types: Collection[str] | None = None,
    receivers: Collection[str] | None = None,
) -> tuple[RuleSet | None, list[Problem]]:
    problems = source.duplicate_problems()
    try:
        spec = RulesFileSpec.model_validate(source.data)
    except ValidationError as err:
        for item in err.errors(include_url=False):
            path = _data_path(source.data, item["loc"])
            problems.append(source.problem(path, _reason(item)))
        return None, problems
    problems += _cross_check(spec, source, metrics, types, receivers)
    if problems:
        return None, problems
    return _compile(spec, str(source.path)), []


def _cross_check(
    spec: RulesFileSpec,
    source: SourceFile,
    metrics: Collection[str] | None,
    types: Collection[str] | None,
    receivers: Collection[str] | None,
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, rule in enumerate(spec.rules):
        at: FieldPath = ("rules", index)
        if rule.name in seen:
            problems.append(source.problem((*at, "name"), f"rule name {rule.name!r} used twice"))
        seen.add(rule.name)
        if metrics is not None and rule.metric is not None and rule.metric not in metrics:
            reason = f"unknown metric {rule.metric!r} (not in catalogue)"
            problems.append(source.problem((*at, "metric"), reason))
        for key in ("types", "exclude_types"):
            for t_index, type_name in enumerate(getattr(rule.scope, key)):
                if types is not None and type_name not in types:
                    problems.append(
                        source.problem(
                            (*at, "scope", key, t_index),
                            f"unknown device type {type_name!r} (not in catalogue)",
                        )
                    )
        for r_index, receiver in enumerate(rule.receivers):
            if receivers is not None and receiver not in receivers:
                problems.append(
                    source.problem(
                        (*at, "receivers", r_index),
                        f"receiver {receiver!r} is not configured under alerting.receivers",
                    )
                )
        over = rule.over if isinstance(rule, RateSpec | AggregateSpec) else None
        if over is not None and not timedelta(0) < over <= MAX_WINDOW:
            problems.append(source.problem((*at, "over"), "a window is longer than 0, at most 7d"))
        if isinstance(rule, NoDataSpec) and rule.for_ <= timedelta(0):
            problems.append(source.problem((*at, "for"), "a no-data duration is longer than 0"))
        if not isinstance(rule, NoDataSpec):
            problems += _check_levels(rule.levels, source, (*at, "levels"))
    return problems


def _check_levels(levels: list[LevelSpec], source: SourceFile, at: FieldPath) -> list[Problem]:
    problems: list[Problem] = []
    compiled = [level.compile() for level in levels]
    directions = {direction for direction, _ in compiled}
    if len(directions) > 1:
        return [source.problem(at, "mix of at_least and at_most levels: use one direction")]
    names: set[str] = set()
    for index, (direction, level) in enumerate(compiled):
        if level.name in names:
            problems.append(source.problem((*at, index, "name"), f"level {level.name!r} twice"))
        names.add(level.name)
        if index == 0:
            continue
        previous = compiled[index - 1][1]
        key = "at_least" if direction is Direction.ABOVE else "at_most"
        worse = level.trigger > previous.trigger
        if direction is Direction.BELOW:
            worse = level.trigger < previous.trigger
        if not worse:
            order = "rising" if direction is Direction.ABOVE else "falling"
            problems.append(
                source.problem(
                    (*at, index, key),
                    f"levels go from mild to severe: {key} must be strictly {order} "
                    f"({level.trigger:g} after {previous.trigger:g})",
                )
            )
    return problems


def with_device_levels(rules: RuleSet, registry: Registry) -> RuleSet:
    """The rule set with each device's own levels (the registry's ``alert_levels``).

    Checked like a rule's levels (mild to severe, hysteresis, unique names) and against the
    rule (has levels, the same direction); :class:`RulesError` names the registry file and
    line of every problem. Levels for a rule this rule file lacks are logged and ignored.
    """
    wanted = [(index, d) for index, d in enumerate(registry.devices) if d.alert_levels]
    if not wanted:
        return rules
    source = read_yaml(Path(registry.source))
    problems: list[Problem] = []
    found: dict[str, dict[str, tuple[Level, ...]]] = {}
    for index, device in wanted:
        for rule_name, raw_levels in device.alert_levels.items():
            at: FieldPath = ("devices", index, "alert_levels", rule_name)
            rule = rules.by_name(rule_name)
            if rule is None:  # another rule file (a test's, a department's): not an error
                log.warning(
                    "device levels for a rule the rule file does not have: ignored",
                    extra={
                        "where": str(source.problem(at, "")).rstrip(": "),
                        "rules": rules.source,
                    },
                )
                continue
            if rule.kind is RuleKind.NODATA:
                problems.append(source.problem(at, f"{rule_name!r} is a no-data rule: no levels"))
                continue
            try:
                specs = _LEVELS.validate_python(raw_levels)
            except ValidationError as err:
                problems += pydantic_problems(source, err, at)
                continue
            level_problems = _check_levels(specs, source, at) if specs else []
            if not specs:
                level_problems.append(source.problem(at, "give at least one level"))
            compiled = [spec.compile() for spec in specs]
            if any(direction is not rule.direction for direction, _ in compiled):
                key = "at_least" if rule.direction is Direction.ABOVE else "at_most"
                reason = f"rule {rule_name!r} alerts {rule.direction.value}: use {key} levels"
                level_problems.append(source.problem(at, reason))
            problems += level_problems
            if not level_problems:
                found.setdefault(rule_name, {})[device.id] = tuple(lvl for _, lvl in compiled)
    if problems:
        raise RulesError(problems)
    return RuleSet(
        tuple(
            replace(rule, device_levels=MappingProxyType(found[rule.name]))
            if rule.name in found
            else rule
            for rule in rules.rules
        ),
        rules.source,
    )


def _compile(spec: RulesFileSpec, source: str) -> RuleSet:
    return RuleSet(tuple(_compile_rule(rule, spec.defaults) for rule in spec.rules), source)


def _compile_rule(spec: RuleSpec, defaults: DefaultsSpec) -> Rule:
    title: Mapping[str, str] = MappingProxyType(
        {lang.value: spec.title.get(lang, spec.name.replace("_", " ")) for lang in Language}
    )
    common: dict[str, Any] = {
        "name": spec.name,
        "title": title,
        "scope": Scope(
            frozenset(spec.scope.types),
            frozenset(spec.scope.kecamatan),
            frozenset(spec.scope.devices),
            frozenset(spec.scope.exclude_devices),
            frozenset(spec.scope.exclude_types),
        ),
        "labels": MappingProxyType(dict(spec.labels)),
        "receivers": tuple(spec.receivers),
        "repeat_ms": _ms(spec.repeat if spec.repeat is not None else defaults.repeat),
    }
    if isinstance(spec, NoDataSpec):
        level = Level(spec.level, 0.0, 0.0, 0, spec.severity)
        return Rule(
            kind=RuleKind.NODATA,
            metric=spec.metric,
            signal=Signal(SignalKind.VALUE),
            direction=Direction.ABOVE,
            levels=(level,),
            silent_ms=_ms(spec.for_),
            **common,
        )
    compiled = [level.compile() for level in spec.levels]
    if isinstance(spec, RateSpec):
        kind, signal = RuleKind.RATE, Signal(SignalKind(spec.change), _ms(spec.over))
    elif isinstance(spec, AggregateSpec):
        kind, signal = RuleKind.AGGREGATE, Signal(SignalKind(spec.function), _ms(spec.over))
    else:
        kind, signal = RuleKind.THRESHOLD, Signal(SignalKind.VALUE)
    return Rule(
        kind=kind,
        metric=spec.metric,
        signal=signal,
        direction=compiled[0][0],
        levels=tuple(level for _, level in compiled),
        **common,
    )


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def _data_path(data: Any, loc: tuple[int | str, ...]) -> FieldPath:
    """Pydantic's error location mapped onto the YAML document.

    Discriminated unions put the tag (``threshold``) into the location; it is not a key of
    the document, so it is dropped. Validators on a model report at the model itself.
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        tag = isinstance(node, dict) and part not in node and node.get("kind") == part
        if tag:
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def _reason(item: Any) -> str:
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


def _file_problem(path: Path, err: Exception) -> Problem:
    return Problem(str(path), 1, "(file)", str(err))
