"""``kotaflow grafana sync``: push the bundle through Grafana's HTTP API, idempotently.

Three steps, the middle one pure:

1. :func:`fetch_current` reads, for every object of the bundle, what Grafana has under the
   same uid (``None`` when it has nothing);
2. :func:`plan` compares desired with current and decides *create*, *update* or
   *unchanged* per object. Equality is "everything we set is set the same": Grafana's own
   additions (ids, versions, provenance, defaults) are ignored, and so are secrets
   (:class:`~deploy.grafana.envref.EnvRef`), which Grafana never returns - so a rotated
   token is pushed only with ``--force``;
3. :func:`apply` sends the creates and updates, in dependency order (folders, data source,
   dashboards, contact points, rule groups, notification policy), then the deletions.

What kotaflow made and no longer wants is deleted (:func:`fetch_owned`, :func:`leftovers`):
contact points with our ``kf-`` uid prefix (a receiver removed from the alerting settings,
or Grafana's notifications turned off) and rule groups in our alert folder (a rule removed
or renamed). Nothing else in Grafana is touched.

Running it twice in a row reports everything unchanged the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from deploy.grafana.bundle import Bundle
from deploy.grafana.envref import EnvRef, for_api

SYNC_MESSAGE = "kotaflow grafana sync"


class Kind(StrEnum):
    FOLDER = "folder"
    DATASOURCE = "datasource"
    DASHBOARD = "dashboard"
    CONTACT_POINT = "contact point"
    RULE_GROUP = "rule group"
    POLICY = "notification policy"


ORDER = tuple(Kind)
"""Apply order: what a later object refers to exists first."""


class Action(StrEnum):
    CREATE = "created"
    UPDATE = "updated"
    UNCHANGED = "unchanged"
    DELETE = "deleted"


CONTACT_UID_PREFIX = "kf-"
"""Every contact point kotaflow makes has a uid with this prefix (``alerting._contact_uid``)."""


@dataclass(frozen=True, slots=True)
class Desired:
    kind: Kind
    key: str
    """uid (folder, data source, dashboard, contact point), ``folder/group``, or ``tree``."""
    title: str
    body: dict[str, Any]
    """Exactly what is sent (HTTP API shape; EnvRefs resolved at send time)."""
    compare: dict[str, Any]
    """The part of what Grafana returns that must match ``body``."""


@dataclass(frozen=True, slots=True)
class Change:
    desired: Desired
    action: Action


def desired_objects(bundle: Bundle) -> list[Desired]:
    """Every object of the bundle, in apply order."""
    alerting = bundle.alerting
    objects = [
        Desired(Kind.FOLDER, f.uid, f.title, {"uid": f.uid, "title": f.title}, {"title": f.title})
        for f in bundle.folders
    ]
    objects.append(
        Desired(
            Kind.FOLDER,
            alerting.folder_uid,
            alerting.folder_title,
            {"uid": alerting.folder_uid, "title": alerting.folder_title},
            {"title": alerting.folder_title},
        )
    )
    ds = bundle.datasource
    visible = {key: value for key, value in ds.items() if key != "secureJsonData"}
    objects.append(Desired(Kind.DATASOURCE, ds["uid"], ds["name"], ds, visible))
    for folder, board in bundle.dashboards:
        body = {
            "dashboard": board,
            "folderUid": folder.uid,
            "overwrite": True,
            "message": SYNC_MESSAGE,
        }
        compare = {"dashboard": board, "meta": {"folderUid": folder.uid}}
        objects.append(Desired(Kind.DASHBOARD, board["uid"], board["title"], body, compare))
    for point in alerting.contact_points:
        objects.append(Desired(Kind.CONTACT_POINT, point["uid"], point["name"], point, point))
    for group in alerting.groups:
        body = {
            "title": group["title"],
            "folderUid": alerting.folder_uid,
            "interval": group["interval"],
            "rules": group["rules"],
        }
        key = f"{alerting.folder_uid}/{group['title']}"
        objects.append(Desired(Kind.RULE_GROUP, key, group["title"], body, body))
    if alerting.policy:  # empty: Grafana does not notify (alerting.grafana_notifications)
        objects.append(
            Desired(Kind.POLICY, "tree", "kotaflow routes", alerting.policy, alerting.policy)
        )
    return objects


def matches(desired: Any, current: Any) -> bool:
    """Whether ``current`` (from Grafana) holds everything ``desired`` sets.

    Mappings: every desired key present and matching (extra keys in ``current`` are fine);
    lists: same length, item by item; :class:`EnvRef`: always (Grafana hides secrets);
    numbers: by value (Grafana may turn ``60`` into ``60.0``).
    """
    if isinstance(desired, EnvRef):
        return True
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            key in current and matches(value, current[key]) for key, value in desired.items()
        )
    if isinstance(desired, list | tuple):
        return (
            isinstance(current, list | tuple)
            and len(desired) == len(current)
            and all(matches(d, c) for d, c in zip(desired, current, strict=True))
        )
    if isinstance(desired, bool) or isinstance(current, bool):
        return desired is current
    if isinstance(desired, int | float) and isinstance(current, int | float):
        return float(desired) == float(current)
    return bool(desired == current)


def plan(
    desired: Iterable[Desired],
    current: Mapping[tuple[Kind, str], Mapping[str, Any] | None],
    force: bool = False,
) -> list[Change]:
    """Pure: what to do with each desired object given what Grafana has."""
    changes = []
    for item in desired:
        have = current.get((item.kind, item.key))
        if have is None:
            action = Action.CREATE
        elif force or not matches(item.compare, have):
            action = Action.UPDATE
        else:
            action = Action.UNCHANGED
        changes.append(Change(item, action))
    return changes


@dataclass(frozen=True, slots=True)
class Owned:
    """What Grafana holds that kotaflow made, to find what is no longer wanted."""

    contact_points: Mapping[str, str]
    """uid -> name, for contact points with :data:`CONTACT_UID_PREFIX`."""
    rule_groups: Mapping[str, tuple[str, ...]]
    """``folder/group`` -> the uids of its rules, for groups in our alert folder."""


def leftovers(desired: Iterable[Desired], owned: Owned) -> list[Change]:
    """Pure: a deletion for each object of ours that the bundle no longer has."""
    wanted = {(d.kind, d.key) for d in desired}
    changes = [
        Change(
            Desired(Kind.RULE_GROUP, key, key.split("/", 1)[1], {"rules": list(uids)}, {}),
            Action.DELETE,
        )
        for key, uids in sorted(owned.rule_groups.items())
        if (Kind.RULE_GROUP, key) not in wanted
    ]
    changes += [
        Change(Desired(Kind.CONTACT_POINT, uid, name, {}, {}), Action.DELETE)
        for uid, name in sorted(owned.contact_points.items())
        if (Kind.CONTACT_POINT, uid) not in wanted
    ]
    return changes


def summary(changes: Iterable[Change]) -> dict[Action, int]:
    counts = dict.fromkeys(Action, 0)
    for change in changes:
        counts[change.action] += 1
    return counts


class GrafanaLike(Protocol):
    """The parts of ``grafana_client.GrafanaApi`` sync uses (untyped library)."""

    folder: Any
    datasource: Any
    dashboard: Any
    alertingprovisioning: Any


def fetch_current(
    api: GrafanaLike, desired: Iterable[Desired]
) -> dict[tuple[Kind, str], Mapping[str, Any] | None]:
    """What Grafana has for each desired object (``None``: nothing under that uid)."""
    desired = list(desired)
    points: dict[str, Mapping[str, Any]] = {}
    if any(d.kind is Kind.CONTACT_POINT for d in desired):
        points = {p["uid"]: p for p in api.alertingprovisioning.get_contactpoints() or []}
    readers: dict[Kind, Callable[[Desired], Any]] = {
        Kind.FOLDER: lambda d: api.folder.get_folder(d.key),
        Kind.DATASOURCE: lambda d: api.datasource.get_datasource_by_uid(d.key),
        Kind.DASHBOARD: lambda d: api.dashboard.get_dashboard(d.key),
        Kind.CONTACT_POINT: lambda d: points.get(d.key),
        Kind.RULE_GROUP: lambda d: api.alertingprovisioning.get_rule_group(*d.key.split("/", 1)),
        Kind.POLICY: lambda d: api.alertingprovisioning.get_notification_policy_tree(),
    }
    return {(d.kind, d.key): _or_none(readers[d.kind], d) for d in desired}


def fetch_owned(api: GrafanaLike, folder_uid: str) -> Owned:
    """Our contact points (by uid prefix) and the rule groups in our alert folder."""
    provisioning = api.alertingprovisioning
    points = {
        str(p["uid"]): str(p.get("name", ""))
        for p in provisioning.get_contactpoints() or []
        if str(p.get("uid", "")).startswith(CONTACT_UID_PREFIX)
    }
    groups: dict[str, list[str]] = {}
    for rule in provisioning.get_alertrules_all() or []:
        if rule.get("folderUID") == folder_uid:
            groups.setdefault(f"{folder_uid}/{rule['ruleGroup']}", []).append(str(rule["uid"]))
    return Owned(points, {key: tuple(uids) for key, uids in groups.items()})


def apply(
    api: GrafanaLike, changes: Iterable[Change], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Send every create and update, in :data:`ORDER`; then the deletions, rules before
    contact points (after the policy no longer routes to them). Returns the deletions
    Grafana refused (a contact point a policy made by hand still routes to), each with
    Grafana's reason: they are reported, not fatal."""
    from grafana_client.client import GrafanaClientError

    changes = list(changes)
    todo = [c for c in changes if c.action in (Action.CREATE, Action.UPDATE)]
    todo.sort(key=lambda c: ORDER.index(c.desired.kind))
    provisioning = api.alertingprovisioning
    gone = [c.desired for c in changes if c.action is Action.DELETE]
    gone.sort(key=lambda d: d.kind is not Kind.RULE_GROUP)
    for change in todo:
        item, create = change.desired, change.action is Action.CREATE
        body = for_api(item.body, environ)
        if item.kind is Kind.FOLDER:
            if create:
                api.folder.create_folder(body["title"], uid=body["uid"])
            else:
                api.folder.update_folder(body["uid"], title=body["title"], overwrite=True)
        elif item.kind is Kind.DATASOURCE:
            if create:
                api.datasource.create_datasource(body)
            else:
                api.datasource.update_datasource_by_uid(item.key, body)
        elif item.kind is Kind.DASHBOARD:
            api.dashboard.update_dashboard(body)
        elif item.kind is Kind.CONTACT_POINT:
            if create:
                provisioning.create_contactpoint(body)
            else:
                provisioning.update_contactpoint(item.key, body)
        elif item.kind is Kind.RULE_GROUP:
            folder_uid, group = item.key.split("/", 1)
            provisioning.update_rule_group(folder_uid, group, body)
        else:
            provisioning.set_notification_policy_tree(body)
    refused = []
    for item in gone:
        try:
            if item.kind is Kind.RULE_GROUP:
                for uid in item.body["rules"]:
                    provisioning.delete_alertrule(uid)
            else:
                provisioning.delete_contactpoint(item.key)
        except GrafanaClientError as err:
            refused.append(f"{item.kind.value} {item.key} not deleted: {err}")
    return refused


def _or_none(read: Callable[[Desired], Any], item: Desired) -> Mapping[str, Any] | None:
    """The object, or None when Grafana answers 404 (other errors propagate)."""
    from grafana_client.client import GrafanaClientError

    try:
        found = read(item)
    except GrafanaClientError as err:
        if getattr(err, "status_code", None) == 404:
            return None
        raise
    return found if isinstance(found, Mapping) else None
