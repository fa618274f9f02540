"""Grafana alert rules mirroring kotaflow's alerting; contact points only when asked for.

``processors/alerting`` evaluates the rule file on the stream and notifies: it is the one
source of notifications. Grafana gets the same rules so operators see them in its alerting
UI, with history and silences, and nothing more: by default no contact point of ours exists
(the provisioning files delete any we made before and reset the notification policy to
Grafana's own default), so a deployment with both never tells staff twice. With
``alerting.grafana_notifications: true`` the operator turns Grafana's notifications on
explicitly, and then: Each kotaflow rule becomes one Grafana rule group, each of its levels
(Waspada, Siaga, Awas...) one rule: A = the rule's Flux signal per device
(:func:`deploy.grafana.flux.rule_signal`), B = its last value, C = the level's threshold,
with the level's clear value as Grafana's recovery threshold (hysteresis) and its ``for``.

Contact points mirror ``alerting.receivers`` of the settings (webhook, e-mail, Telegram; the
WhatsApp/SMS gateway and the terminal have no Grafana counterpart and are listed as
skipped). Secrets are :class:`~deploy.grafana.envref.EnvRef`. The policy routes each rule to
the receivers the alerting stage would use: the rule's own, else the default ones.

Objects are built with grafana-foundation-sdk and kept in the HTTP API's JSON shape;
:mod:`deploy.grafana.provisioning` reshapes them into the file format.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import expr as eb
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from deploy.grafana import flux, i18n
from deploy.grafana.context import BuildContext
from deploy.grafana.envref import EnvRef
from deploy.grafana.jsonable import plain
from deploy.grafana.query import Flux, datasource_ref
from kotaflow.alerting_settings import (
    AlertingSettings,
    EmailReceiver,
    Receiver,
    TelegramReceiver,
    WebhookReceiver,
)
from processors.alerting.model import Direction, Level, Rule, RuleKind, Scope

FOLDER_UID = "kotaflow-alerts"
EVALUATE_EVERY_S = 60
EXPRESSION = "__expr__"
THRESHOLD_LOOKBACK_S = 3600
NODATA_LOOKBACK_S = 7 * 86400
DEFAULT_CONTACT = "kotaflow-email"
DEFAULT_EMAIL_ENV = "KOTAFLOW_GRAFANA_ALERT_EMAIL"
GROUP_BY = ("alertname", "kotaflow_rule", "device")
TELEGRAM_API = "https://api.telegram.org"
_UID_MAX = 40


@dataclass(frozen=True, slots=True)
class AlertingObjects:
    """Everything Grafana alerting gets, in the HTTP API's JSON shape (EnvRefs inside)."""

    folder_uid: str
    folder_title: str
    groups: list[dict[str, Any]]
    """Rule groups: ``{"title", "folderUid", "interval", "rules": [rule, ...]}``."""
    contact_points: list[dict[str, Any]]
    policy: dict[str, Any]
    """Empty when Grafana does not notify (the default)."""
    skipped: list[str]
    """Receivers with no Grafana counterpart, with the reason."""
    retired_contact_uids: list[str] = field(default_factory=list)
    """Contact points we would make if notifying: deleted from Grafana while we are not."""

    @property
    def notifies(self) -> bool:
        return bool(self.contact_points)


def build_alerting(ctx: BuildContext, settings: AlertingSettings) -> AlertingObjects:
    groups = [
        plain(rule_group(ctx, mirror, name))
        for rule in ctx.rules.rules
        for name, mirror in mirrored(rule)
    ]
    contact_points, skipped = contact_points_of(settings)
    title = i18n.ALERT_FOLDER(ctx.lang)
    if not settings.grafana_notifications:
        uids = [str(point["uid"]) for point in contact_points]
        return AlertingObjects(FOLDER_UID, title, groups, [], {}, [], uids)
    names = [cp["name"] for cp in contact_points]
    tree = policy(ctx, settings, names)
    return AlertingObjects(FOLDER_UID, title, groups, contact_points, tree, skipped)


def rule_uid(rule_name: str, index: int) -> str:
    """``kf-<rule>-<level index>``; shortened with a hash to fit Grafana's 40 characters."""
    uid = f"kf-{rule_name}-{index}"
    if len(uid) <= _UID_MAX:
        return uid
    digest = hashlib.sha1(rule_name.encode()).hexdigest()[:8]
    keep = _UID_MAX - len(f"kf--{digest}-{index}")
    return f"kf-{rule_name[:keep]}-{digest}-{index}"


def mirrored(rule: Rule) -> list[tuple[str, Rule]]:
    """(group name, rule) for Grafana: a rule, and one per device with its own levels (the
    rule's group leaves those devices out, so Grafana shows each device at its own values)."""
    if not rule.device_levels:
        return [(rule.name, rule)]
    own = frozenset(rule.device_levels)
    scope = replace(rule.scope, exclude_devices=rule.scope.exclude_devices | own)
    found = [(rule.name, replace(rule, scope=scope, device_levels=MappingProxyType({})))]
    for device, levels in sorted(rule.device_levels.items()):
        alone = Scope(types=rule.scope.types, devices=frozenset({device}))
        mirror = replace(rule, scope=alone, levels=levels, device_levels=MappingProxyType({}))
        found.append((f"{rule.name}-{device}", mirror))
    return found


def rule_group(ctx: BuildContext, rule: Rule, group: str | None = None) -> ab.RuleGroup:
    name = group or rule.name
    rules = [level_rule(ctx, rule, index, level, name) for index, level in enumerate(rule.levels)]
    return ab.RuleGroup(name).folder_uid(FOLDER_UID).interval(EVALUATE_EVERY_S).rules(list(rules))


def level_rule(
    ctx: BuildContext, rule: Rule, index: int, level: Level, group: str | None = None
) -> ab.Rule:
    group = group or rule.name
    lookback = _lookback_s(rule)
    signal = (
        ab.Query("A")
        .datasource_uid(ctx.datasource_uid)
        .relative_time_range(am.RelativeTimeRange(from_val=lookback, to=0))
        .model(
            Flux(
                flux.rule_signal(ctx.influx.telemetry_bucket, rule, list(ctx.fleet.catalogue.types))
            ).datasource(datasource_ref(ctx.datasource_uid))
        )
    )
    expression = DataSourceRef(type_val=EXPRESSION, uid=EXPRESSION)
    last = (
        ab.Query("B")
        .datasource_uid(EXPRESSION)
        .model(
            eb.TypeReduce()
            .ref_id("B")
            .expression("A")
            .reducer("last")
            .settings(eb.ExprTypeReduceSettings().mode("dropNN"))
            .datasource(expression)
        )
    )
    threshold = (
        ab.Query("C")
        .datasource_uid(EXPRESSION)
        .model(
            eb.TypeThreshold()
            .ref_id("C")
            .expression("B")
            .conditions([_condition(rule, level)])
            .datasource(expression)
        )
    )
    title = f"{rule.title.get('id', rule.name)}: {level.name}"
    if group != rule.name:
        title += f" ({', '.join(sorted(rule.scope.devices))})"
    return (
        ab.Rule(title)
        .uid(rule_uid(group, index))
        .folder_uid(FOLDER_UID)
        .rule_group(group)
        .org_id(1)
        .queries([signal, last, threshold])
        .condition("C")
        .for_val(f"{level.for_ms // 1000}s")
        .no_data_state("OK")
        .exec_err_state("Error")
        .labels(
            {
                **dict(rule.labels),
                "kotaflow_rule": rule.name,
                "level": level.name,
                "severity": level.severity.value,
            }
        )
        .annotations(_annotations(ctx, rule, level))
    )


def _lookback_s(rule: Rule) -> int:
    if rule.kind is RuleKind.NODATA:
        return NODATA_LOOKBACK_S
    if rule.kind is RuleKind.THRESHOLD:
        return THRESHOLD_LOOKBACK_S
    return max(60, rule.signal.window_ms // 1000)


def _condition(rule: Rule, level: Level) -> eb.ExprTypeThresholdConditions:
    if rule.kind is RuleKind.NODATA:
        trigger = (
            eb.ExprTypeThresholdConditionsEvaluator().type("gt").params([rule.silent_ms / 1000])
        )
        return eb.ExprTypeThresholdConditions().evaluator(trigger)
    above = rule.direction is Direction.ABOVE
    condition = eb.ExprTypeThresholdConditions().evaluator(
        eb.ExprTypeThresholdConditionsEvaluator()
        .type("gte" if above else "lte")
        .params([level.trigger])
    )
    if level.clear != level.trigger:
        condition = condition.unload_evaluator(
            eb.ExprTypeThresholdConditionsUnloadEvaluator()
            .type("lt" if above else "gt")
            .params([level.clear])
        )
    return condition


def _annotations(ctx: BuildContext, rule: Rule, level: Level) -> dict[str, str]:
    metric = ctx.fleet.catalogue.metrics.get(rule.metric or "")
    unit = metric.unit if metric is not None else ""
    where = "{{ $labels.device }} ({{ $labels.kecamatan }})"
    value = "{{ humanize $values.B.Value }}"
    if rule.kind is RuleKind.NODATA:
        summary_id = f"{where}: tidak mengirim data selama {value} detik"
        summary_en = f"{where}: no data for {value} s"
    else:
        summary_id = (
            f"{where}: {rule.title.get('id', rule.name)} {level.name}, nilai {value} {unit}"
        )
        summary_en = (
            f"{where}: {rule.title.get('en', rule.name)} {level.name}, value {value} {unit}"
        )
    return {
        "summary": summary_id.strip(),
        "summary_en": summary_en.strip(),
        "dashboard": "/d/" + ctx.uid("device") + "/?var-device={{ $labels.device }}",
    }


def _secret_env(receiver: str, what: str) -> str:
    return f"KOTAFLOW_GRAFANA_{re.sub(r'[^A-Za-z0-9]', '_', receiver).upper()}_{what}"


def contact_points_of(settings: AlertingSettings) -> tuple[list[dict[str, Any]], list[str]]:
    """Contact points for the configured receivers; a default e-mail one if none maps."""
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name, receiver in sorted(settings.receivers.items()):
        built = _contact_point(name, receiver)
        if isinstance(built, str):
            skipped.append(f"{name}: {built}")
        else:
            points.append(plain(built))
    if not points:
        points.append(
            plain(
                ab.ContactPoint()
                .uid(DEFAULT_CONTACT)
                .name(DEFAULT_CONTACT)
                .type("email")
                .settings({"addresses": EnvRef(DEFAULT_EMAIL_ENV), "singleEmail": True})
            )
        )
    return points, skipped


def _contact_point(name: str, receiver: Receiver) -> ab.ContactPoint | str:
    point = ab.ContactPoint().uid(_contact_uid(name)).name(name)
    if isinstance(receiver, WebhookReceiver):
        if receiver.headers:
            return "webhook headers cannot be mirrored; configure them in Grafana"
        return point.type("webhook").settings({"url": receiver.url, "httpMethod": "POST"})
    if isinstance(receiver, EmailReceiver):
        return point.type("email").settings(
            {"addresses": ";".join(receiver.to), "singleEmail": True}
        )
    if isinstance(receiver, TelegramReceiver):
        if receiver.base_url.rstrip("/") != TELEGRAM_API:
            return f"Grafana's Telegram integration cannot use {receiver.base_url}"
        token = receiver.token.get_secret_value() or None
        return point.type("telegram").settings(
            {"bottoken": EnvRef(_secret_env(name, "TOKEN"), token), "chatid": receiver.chat_id}
        )
    return f"{receiver.kind} receivers have no Grafana contact point type"


def _contact_uid(name: str) -> str:
    uid = "kf-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)
    return uid[:_UID_MAX]


def effective_receivers(
    rule: Rule, settings: AlertingSettings, available: Sequence[str]
) -> list[str]:
    """As the alerting stage decides: the rule's receivers, else the defaults, else all."""
    wanted = list(rule.receivers) or list(settings.default_receivers) or list(settings.receivers)
    chosen = [name for name in wanted if name in available]
    return chosen or [available[0]]


def policy(
    ctx: BuildContext, settings: AlertingSettings, contact_points: Sequence[str]
) -> dict[str, Any]:
    routes: dict[str, list[str]] = {}
    for rule in ctx.rules.rules:
        for receiver in effective_receivers(rule, settings, contact_points):
            routes.setdefault(receiver, []).append(rule.name)
    root = contact_points[0]
    tree = (
        ab.NotificationPolicy()
        .receiver(root)
        .group_by(list(GROUP_BY))
        .group_wait("30s")
        .group_interval("5m")
        .repeat_interval("4h")
        .routes(
            [
                ab.NotificationPolicy()
                .receiver(receiver)
                .object_matchers([["kotaflow_rule", "=~", "^(" + "|".join(rules) + ")$"]])
                .continue_val(True)
                for receiver, rules in sorted(routes.items())
            ]
        )
    )
    result: dict[str, Any] = plain(tree)
    return result


def group_rules(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every rule of every group."""
    return [dict(rule) for group in groups for rule in group.get("rules", [])]
