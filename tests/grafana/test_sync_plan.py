"""``grafana sync``'s plan: what is created, updated or left alone (pure, no Grafana here)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from deploy.grafana.bundle import Bundle
from deploy.grafana.envref import EnvRef, MissingSecretError, for_api
from deploy.grafana.sync import (
    Action,
    Change,
    Desired,
    Kind,
    Owned,
    apply,
    desired_objects,
    leftovers,
    matches,
    plan,
    summary,
)


def _as_grafana_returns(item: Desired) -> dict[str, Any]:
    """What Grafana answers for an object we sent: ours, plus its own fields, secrets hidden."""
    echoed: dict[str, Any] = copy.deepcopy(_strip_secrets(item.compare))
    echoed.update({"id": 17, "version": 3, "provenance": "api"})
    if item.kind is Kind.DASHBOARD:
        echoed["dashboard"] = {**echoed["dashboard"], "id": 42, "version": 3}
        echoed["meta"] = {**echoed["meta"], "slug": "x", "provisioned": False}
    return echoed


def _strip_secrets(value: Any) -> Any:
    if isinstance(value, EnvRef):
        return "[REDACTED]"
    if isinstance(value, Mapping):
        return {k: _strip_secrets(v) for k, v in value.items() if k != "secureJsonData"}
    if isinstance(value, list):
        return [_strip_secrets(v) for v in value]
    return value


@pytest.fixture(scope="module")
def desired(bundle: Bundle) -> list[Desired]:
    return desired_objects(bundle)


def test_an_empty_grafana_gets_everything_created_in_dependency_order(
    desired: list[Desired],
) -> None:
    changes = plan(desired, {})
    assert {c.action for c in changes} == {Action.CREATE}
    kinds = [c.desired.kind for c in changes]
    assert kinds.index(Kind.DATASOURCE) < kinds.index(Kind.DASHBOARD) < kinds.index(Kind.RULE_GROUP)
    assert Kind.POLICY not in kinds  # Grafana notifies nobody unless told to
    assert Kind.CONTACT_POINT not in kinds
    counted = summary(changes)
    assert counted[Action.CREATE] == len(desired)
    assert counted[Action.UNCHANGED] == 0


def test_a_second_sync_changes_nothing(desired: list[Desired]) -> None:
    current = {(d.kind, d.key): _as_grafana_returns(d) for d in desired}
    changes = plan(desired, current)
    assert [c.desired.key for c in changes if c.action is not Action.UNCHANGED] == []


def test_an_edited_dashboard_is_updated_and_nothing_else(desired: list[Desired]) -> None:
    current = {(d.kind, d.key): _as_grafana_returns(d) for d in desired}
    key = (Kind.DASHBOARD, "kotaflow-rivers")
    current[key]["dashboard"]["panels"][0]["title"] = "edited in the UI"
    changes = plan(desired, current)
    updated = [(c.desired.kind, c.desired.key) for c in changes if c.action is Action.UPDATE]
    assert updated == [key]


def test_a_dashboard_moved_to_another_folder_is_updated(desired: list[Desired]) -> None:
    current = {(d.kind, d.key): _as_grafana_returns(d) for d in desired}
    key = (Kind.DASHBOARD, "kotaflow-air-en")
    current[key]["meta"]["folderUid"] = "general"
    assert [c.action for c in plan(desired, current) if (c.desired.kind, c.desired.key) == key] == [
        Action.UPDATE
    ]


def test_secrets_are_not_compared_but_force_sends_them_again(desired: list[Desired]) -> None:
    current = {(d.kind, d.key): _as_grafana_returns(d) for d in desired}
    source = next(d for d in desired if d.kind is Kind.DATASOURCE)
    assert isinstance(source.body["secureJsonData"]["token"], EnvRef)
    assert all(c.action is Action.UNCHANGED for c in plan(desired, current))
    assert all(c.action is Action.UPDATE for c in plan(desired, current, force=True))


def test_matching_ignores_grafanas_additions_but_not_missing_or_changed_values() -> None:
    assert matches({"a": 1, "b": [1, {"c": "x"}]}, {"a": 1.0, "b": [1, {"c": "x", "d": 2}], "e": 0})
    assert not matches({"a": 1}, {})
    assert not matches({"b": [1, 2]}, {"b": [1]})
    assert not matches({"a": True}, {"a": 1})
    assert matches({"token": EnvRef("T")}, {"token": "[REDACTED]"})


def test_api_bodies_get_secrets_from_the_environment_or_fail_clearly() -> None:
    body = {"secureJsonData": {"token": EnvRef("KOTAFLOW_GRAFANA_INFLUX_TOKEN")}}
    assert for_api(body, {"KOTAFLOW_GRAFANA_INFLUX_TOKEN": "t"}) == {
        "secureJsonData": {"token": "t"}
    }
    assert for_api({"t": EnvRef("A", "known")}, {}) == {"t": "known"}
    with pytest.raises(MissingSecretError, match="KOTAFLOW_GRAFANA_INFLUX_TOKEN"):
        for_api(body, {})


def test_our_contact_points_and_rule_groups_no_longer_wanted_are_deleted(
    desired: list[Desired],
) -> None:
    group = next(d for d in desired if d.kind is Kind.RULE_GROUP)
    owned = Owned(
        contact_points={"kf-old-webhook": "old-webhook"},
        rule_groups={group.key: ("kf-kept-0",), "kotaflow-alerts/retired": ("r1", "r2")},
    )
    deleted = {(c.desired.kind, c.desired.key) for c in leftovers(desired, owned)}
    assert deleted == {
        (Kind.CONTACT_POINT, "kf-old-webhook"),
        (Kind.RULE_GROUP, "kotaflow-alerts/retired"),
    }
    assert all(c.action is Action.DELETE for c in leftovers(desired, owned))
    assert summary(leftovers(desired, owned))[Action.DELETE] == 2


class _Provisioning:
    """Records the alerting calls apply makes (contract of our own loop, not a Grafana)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def set_notification_policy_tree(self, body: Any) -> None:
        self.calls.append(("policy", "tree"))

    def delete_alertrule(self, uid: str) -> None:
        self.calls.append(("delete rule", uid))

    def delete_contactpoint(self, uid: str) -> None:
        self.calls.append(("delete contact point", uid))


def test_deletions_come_after_the_policy_and_rules_before_contact_points() -> None:
    class Api:
        folder = datasource = dashboard = None
        alertingprovisioning = _Provisioning()

    policy = Desired(Kind.POLICY, "tree", "routes", {"receiver": "x"}, {})
    owned = Owned({"kf-gone": "gone"}, {"kotaflow-alerts/old": ("r1",)})
    apply(Api(), [*leftovers([policy], owned), Change(policy, Action.UPDATE)], environ={})
    assert Api.alertingprovisioning.calls == [
        ("policy", "tree"),
        ("delete rule", "r1"),
        ("delete contact point", "kf-gone"),
    ]
