"""InfluxDB setup for kotaflow: org, buckets with retention, least-privilege tokens.

One code path for every install: the local stack's ``stack up`` (deploy/local/influxdb.py),
compose's ``influxdb-setup`` job and the VM guide (``kotaflow influxdb setup``) all call
:func:`reconcile`. It creates only what is missing and changes nothing that exists: a bucket
whose retention differs from the settings, or a token whose rights differ from its role, is
reported as drift (shortening a retention deletes data; that is the operator's decision).
Tokens are found again by their description, so a second run issues none.

Talks only to the InfluxDB HTTP API it is given, with the operator (all-access) token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from deploy.local.service import ServiceError
from kotaflow.settings import Settings

Rights = Sequence[tuple[str, str]]
"""``(action, bucket name)`` pairs, action ``read`` or ``write``."""

PIPELINE, GRAFANA = "pipeline", "grafana"
"""Write to both buckets (the one shared token of old configs); read both buckets."""
STORE, AGGREGATE, ALERT, HEALTH = "store", "aggregate", "alert", "health"
"""Per-stage roles (picked in ``processors/runtime/influx_token.py``)."""
PUBLIC = "public"
"""``kotaflow public``: read both buckets, like Grafana's, but a token of its own (owned by
the kotaflow user, revocable without touching Grafana)."""
PRODUCTION_ROLES = (STORE, AGGREGATE, ALERT, HEALTH, GRAFANA, PUBLIC)
"""What an install issues by default: no shared pipeline token (the local stack still
issues it for old configs and tests)."""


class InfluxSetupError(ServiceError):
    """The server refused a setup call, or is not in a state setup can work from."""


@dataclass(frozen=True)
class SetupPlan:
    """What kotaflow needs on the server, from the settings (:func:`plan_of`)."""

    org: str
    retention_s: Mapping[str, int]
    """Bucket name -> retention in seconds; 0 keeps data forever."""
    rights: Mapping[str, Rights]
    """Token role -> its rights."""


def stage_rights(settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """Role -> ``(action, bucket name)`` rights of each token kotaflow issues.

    InfluxDB 2.x has per-bucket read and write rights and nothing finer (no per-measurement
    right, no separate delete right: write includes ``/api/v2/delete``)."""
    telemetry, rollups = settings.influxdb.telemetry_bucket, settings.influxdb.rollups_bucket
    alerts = settings.alerting.influx_bucket or telemetry
    health = settings.processing.health.bucket or rollups
    both = [telemetry, rollups]
    return {
        PIPELINE: [("write", b) for b in both],
        GRAFANA: [("read", b) for b in both],
        STORE: [("write", telemetry)],
        AGGREGATE: [("read", telemetry), ("read", rollups), ("write", rollups)],
        ALERT: [("write", alerts)],
        HEALTH: [("write", health)],
        PUBLIC: [("read", b) for b in both],
    }


def plan_of(
    settings: Settings, org: str | None = None, roles: Sequence[str] | None = None
) -> SetupPlan:
    """The plan for ``org`` (default: influxdb.org) with ``roles`` (default: all)."""
    influx = settings.influxdb
    rights = stage_rights(settings)
    unknown = set(roles or ()) - set(rights)
    if unknown:
        raise InfluxSetupError(f"unknown token role(s) {', '.join(sorted(unknown))}")
    days = {
        influx.telemetry_bucket: influx.telemetry_retention_days,
        influx.rollups_bucket: influx.rollups_retention_days,
    }
    return SetupPlan(
        org=org or influx.org,
        retention_s={name: d * 86_400 for name, d in days.items()},
        rights={r: rights[r] for r in roles} if roles else rights,
    )


@dataclass
class SetupResult:
    """What :func:`reconcile` found and did; ``lines()`` is the operator's report."""

    org_id: str = ""
    buckets: dict[str, str] = field(default_factory=dict)
    """Bucket name -> id."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Role -> token."""
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return (
            [f"created {what}" for what in self.created]
            + [f"kept {what}" for what in self.kept]
            + [f"drifted {what}" for what in self.drifted]
        )


def setup_allowed(http: httpx.Client) -> bool:
    """Whether the server still waits for its initial setup (no user, org or token yet)."""
    return bool(raise_for_error(http.get("/api/v2/setup")).json().get("allowed", False))


def initial_setup(
    http: httpx.Client, plan: SetupPlan, user: str, password: str, operator_token: str
) -> None:
    """The server's first user, the plan's org and first bucket, with ``operator_token`` as
    its all-access token (chosen by the caller, who keeps it before calling)."""
    first, retention = next(iter(plan.retention_s.items()))
    body = {
        "username": user,
        "password": password,
        "org": plan.org,
        "bucket": first,
        "retentionPeriodSeconds": retention,
        "token": operator_token,
    }
    raise_for_error(http.post("/api/v2/setup", json=body))


def reconcile(http: httpx.Client, plan: SetupPlan) -> SetupResult:
    """Bring the org, buckets and tokens of ``plan`` into being; ``http`` carries the
    operator token. Idempotent: a second run creates nothing."""
    result = SetupResult()
    result.org_id = _org(http, plan.org, result)
    existing = {str(b["name"]): b for b in _buckets(http, result.org_id)}
    for name, retention in plan.retention_s.items():
        bucket = existing.get(name) or _create_bucket(http, result.org_id, name, retention)
        result.buckets[name] = str(bucket["id"])
        if name not in existing:
            result.created.append(f"bucket {name} (retention {_days(retention)})")
            continue
        actual = _retention(bucket)
        if actual == retention:
            result.kept.append(f"bucket {name} (retention {_days(retention)})")
        else:
            result.drifted.append(
                f"bucket {name}: retention {_days(actual)}, the settings say "
                f"{_days(retention)} (not changed; `influx bucket update` if intended)"
            )
    auths = list(_authorizations(http, result.org_id))
    for role, rights in plan.rights.items():
        missing = [name for _, name in rights if name not in result.buckets]
        if missing:
            result.drifted.append(f"no {role} token: {', '.join(missing)} not in the plan")
            continue
        result.tokens[role] = _token(http, result, auths, role, rights)
    return result


def describe(rights: Rights) -> str:
    """``read rollups, telemetry; write rollups``: the rights, as the token's description."""
    actions: dict[str, list[str]] = {}
    for action, name in rights:
        actions.setdefault(action, []).append(name)
    return "; ".join(f"{a} {', '.join(sorted(names))}" for a, names in sorted(actions.items()))


def _org(http: httpx.Client, name: str, result: SetupResult) -> str:
    found = http.get("/api/v2/orgs", params={"org": name})
    orgs = raise_for_error(found).json().get("orgs", []) if found.status_code != 404 else []
    if orgs:
        result.kept.append(f"org {name}")
        return str(orgs[0]["id"])
    created = raise_for_error(http.post("/api/v2/orgs", json={"name": name})).json()
    result.created.append(f"org {name}")
    return str(created["id"])


def _create_bucket(http: httpx.Client, org_id: str, name: str, retention: int) -> dict[str, Any]:
    rules = [{"type": "expire", "everySeconds": retention}] if retention else []
    body = {"orgID": org_id, "name": name, "retentionRules": rules}
    created: dict[str, Any] = raise_for_error(http.post("/api/v2/buckets", json=body)).json()
    return created


def _token(
    http: httpx.Client,
    result: SetupResult,
    auths: list[dict[str, Any]],
    role: str,
    rights: Rights,
) -> str:
    """The active token described as ``role`` with ``rights``, else a new one."""
    description = f"kotaflow {role}: {describe(rights)}"
    wanted = {(action, result.buckets[name]) for action, name in rights}
    for auth in auths:
        if auth.get("description") == description and auth.get("status") == "active":
            granted = {
                (str(p["action"]), str(p["resource"].get("id")))
                for p in auth.get("permissions", [])
            }
            if granted == wanted:
                result.kept.append(f"{role} token ({describe(rights)})")
            else:
                result.drifted.append(
                    f"{role} token: does not grant {describe(rights)} on these buckets (one "
                    f"was re-created?); kept: `influx auth delete --id {auth.get('id')}` and "
                    "run this again to have it issued anew"
                )
            return str(auth["token"])
    permissions = [
        {"action": action, "resource": {"type": "buckets", "id": bucket_id, "orgID": result.org_id}}
        for action, bucket_id in sorted(wanted)
    ]
    body = {"orgID": result.org_id, "description": description, "permissions": permissions}
    created = raise_for_error(http.post("/api/v2/authorizations", json=body)).json()
    result.created.append(f"{role} token ({describe(rights)})")
    return str(created["token"])


def _buckets(http: httpx.Client, org_id: str) -> list[dict[str, Any]]:
    """The org's buckets (a name filter that matches nothing answers 404, so list them)."""
    response = raise_for_error(http.get("/api/v2/buckets", params={"orgID": org_id, "limit": 100}))
    buckets: list[dict[str, Any]] = response.json().get("buckets", [])
    return buckets


def _authorizations(http: httpx.Client, org_id: str) -> Iterator[dict[str, Any]]:
    response = raise_for_error(http.get("/api/v2/authorizations", params={"orgID": org_id}))
    yield from response.json().get("authorizations", [])


def _retention(bucket: Mapping[str, Any]) -> int:
    rules = [r for r in bucket.get("retentionRules") or [] if r.get("type") == "expire"]
    return int(rules[0].get("everySeconds", 0)) if rules else 0


def _days(seconds: int) -> str:
    if not seconds:
        return "forever"
    days, rest = divmod(seconds, 86_400)
    if rest:
        return f"{seconds} s"
    return "1 day" if days == 1 else f"{days} days"


def raise_for_error(response: httpx.Response) -> httpx.Response:
    """``response``, or an error naming the call that failed and the server's answer."""
    if response.is_error:
        request = response.request
        raise InfluxSetupError(
            f"influxdb: {request.method} {request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response
