"""Cross-checks of the alerting configuration against the rules and the fleet (pure).

Run at start (``kotaflow alert`` refuses to start) and by ``kotaflow alerts check``, so a typo
is found before it silences or pages nobody: receivers without their secrets, routes that can
match no alert or name an unknown kecamatan, rule scopes and silences naming a kecamatan,
device or type that does not exist (with a suggestion: ``'Reokk': did you mean 'Reok'?``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from kotaflow.alert_routes import Route
from kotaflow.alerting_settings import AlertingSettings, EmailReceiver, TelegramReceiver
from kotaflow.names import unknown
from processors.alerting.model import Rule, RuleKind, RuleSet
from processors.alerting.routing import route_name


@dataclass(frozen=True, slots=True)
class Known:
    """What exists: from the registry and the catalogue."""

    kecamatan: frozenset[str]
    devices: frozenset[str]
    types: frozenset[str]


class ConfigProblemsError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def receiver_problems(cfg: AlertingSettings) -> list[str]:
    """Receivers that would fail on every delivery for want of a secret."""
    problems = []
    for name, receiver in sorted(cfg.receivers.items()):
        if isinstance(receiver, TelegramReceiver) and not receiver.token.get_secret_value():
            env = f"KOTAFLOW_ALERTING__RECEIVERS__{name.upper().replace('-', '_')}__TOKEN"
            problems.append(f"receiver {name!r}: Telegram bot token missing (set {env})")
        if isinstance(receiver, EmailReceiver) and receiver.username and not receiver.password:
            problems.append(f"receiver {name!r}: SMTP user {receiver.username!r} has no password")
    return problems


def route_problems(cfg: AlertingSettings, rules: RuleSet, known: Known | None) -> list[str]:
    problems = []
    for index, found in enumerate(cfg.routes):
        where = f"alerting.routes[{index}] ({route_name(index, found)})"
        if known is not None:
            for kecamatan in found.match.kecamatan:
                problem = unknown("kecamatan", kecamatan, known.kecamatan)
                if problem:
                    problems.append(f"{where}: {problem}")
        if not any(_could_match(found, rule) for rule in rules.rules):
            problems.append(f"{where}: matches no alert of any rule in {rules.source}")
        if found.escalate_to and found.escalate_after is None:
            problems.append(f"{where}: escalate_to without escalate_after never escalates")
    default = cfg.default_route
    if default.escalate_to and default.escalate_after is None:
        problems.append("alerting.default_route: escalate_to without escalate_after")
    return problems


def scope_problems(rules: RuleSet, known: Known) -> list[str]:
    problems = []
    for rule in rules.rules:
        scope = rule.scope
        checks = [("kecamatan", v, known.kecamatan) for v in sorted(scope.kecamatan)]
        checks += [("device", v, known.devices) for v in sorted(scope.devices)]
        checks += [("device", v, known.devices) for v in sorted(scope.exclude_devices)]
        for what, value, names in checks:
            problem = unknown(what, value, names)
            if problem:
                problems.append(f"rule {rule.name!r} scope: {problem}")
    return problems


def silence_problems(
    known: Known,
    rules: RuleSet | None,
    *,
    rule: str | None,
    device: str | None,
    kecamatan: str | None,
    type_: str | None,
) -> list[str]:
    given: list[tuple[str, str | None, Iterable[str]]] = [
        ("kecamatan", kecamatan, known.kecamatan),
        ("device", device, known.devices),
        ("device type", type_, known.types),
    ]
    if rules is not None:
        given.append(("rule", rule, [r.name for r in rules.rules]))
    found = [unknown(what, value, list(names)) for what, value, names in given if value]
    return [problem for problem in found if problem]


def all_problems(cfg: AlertingSettings, rules: RuleSet, known: Known | None) -> list[str]:
    problems = receiver_problems(cfg) + route_problems(cfg, rules, known)
    if known is not None:
        problems += scope_problems(rules, known)
    return problems


def _could_match(found: Route, rule: Rule) -> bool:
    m = found.match
    levels = rule.level_names()
    severities = {level.severity.value for level in rule.levels}
    for device_levels in rule.device_levels.values():
        severities |= {level.severity.value for level in device_levels}
    if rule.kind is RuleKind.NODATA:
        levels, severities = {rule.levels[0].name}, {rule.levels[0].severity.value}
    return (
        (not m.rule or any(fnmatchcase(rule.name, pattern) for pattern in m.rule))
        and all(rule.labels.get(key) in values for key, values in m.labels.items())
        and (not m.level or bool(levels & set(m.level)))
        and (not m.severity or bool(severities & set(m.severity)))
        and (
            not m.kecamatan
            or not rule.scope.kecamatan
            or bool(rule.scope.kecamatan & set(m.kecamatan))
        )
    )
