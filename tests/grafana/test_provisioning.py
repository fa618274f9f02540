"""``grafana render`` output checked field by field against Grafana's documented formats."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from deploy.grafana.bundle import Bundle, build_bundle
from deploy.grafana.provisioning import GRAFANA_PROVISIONING, Rendered, render
from kotaflow.alerting_settings import EmailReceiver, TelegramReceiver, WebhookReceiver
from kotaflow.settings import Settings
from tests.grafana import grafana_format as fmt

ENV = {
    "KOTAFLOW_GRAFANA_INFLUX_TOKEN": "read-only-t0ken",
    "KOTAFLOW_GRAFANA_ALERT_EMAIL": "ops@x.id",
}


def _load(out: Path, relative: str) -> dict[str, Any]:
    data = yaml.safe_load((out / relative).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert data["apiVersion"] == 1
    return data


@pytest.fixture(scope="module")
def out(rendered: tuple[Path, Rendered]) -> Path:
    return rendered[0]


def test_render_writes_every_file_and_names_the_environment_grafana_needs(
    rendered: tuple[Path, Rendered],
) -> None:
    out, done = rendered
    for relative in (
        "datasources/kotaflow.yaml",
        "dashboards/kotaflow.yaml",
        "alerting/kotaflow-rules.yaml",
        "alerting/kotaflow-contact-points.yaml",
        "alerting/kotaflow-policies.yaml",
    ):
        assert (out / relative).is_file()
    assert done.env == {"KOTAFLOW_GRAFANA_INFLUX_TOKEN"}  # Grafana notifies nobody: no e-mail


@pytest.fixture(scope="module")
def notifying(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered with ``alerting.grafana_notifications: true`` (the operator's explicit choice)."""
    on = settings.alerting.model_copy(update={"grafana_notifications": True})
    out = tmp_path_factory.mktemp("notifying")
    done = render(build_bundle(settings.model_copy(update={"alerting": on})), out)
    assert done.env == set(ENV)
    return out


def test_datasource_is_influxdb_flux_with_the_token_from_the_environment(out: Path) -> None:
    data = _load(out, "datasources/kotaflow.yaml")
    assert fmt.unknown(data, fmt.DATASOURCE_ROOT) == set()
    (source,) = data["datasources"]
    assert fmt.unknown(source, fmt.DATASOURCE) == set()
    assert set(source) >= fmt.DATASOURCE_REQUIRED
    assert source["type"] == "influxdb"
    assert source["access"] in fmt.ACCESS
    assert fmt.unknown(source["jsonData"], fmt.INFLUX_FLUX_JSON) == set()
    assert source["jsonData"]["version"] == "Flux"
    assert source["jsonData"]["organization"] == "kotaflow"
    assert source["jsonData"]["defaultBucket"] == "telemetry"
    assert source["secureJsonData"] == {"token": "${KOTAFLOW_GRAFANA_INFLUX_TOKEN}"}
    assert fmt.expand(source, ENV)["secureJsonData"]["token"] == "read-only-t0ken"


def test_dashboard_providers_point_at_the_rendered_json(out: Path, bundle: Bundle) -> None:
    data = _load(out, "dashboards/kotaflow.yaml")
    assert fmt.unknown(data, fmt.PROVIDERS_ROOT) == set()
    paths = {}
    for provider in data["providers"]:
        assert fmt.unknown(provider, fmt.PROVIDER) == set()
        assert fmt.unknown(provider["options"], fmt.PROVIDER_OPTIONS) == set()
        assert provider["type"] == "file"
        assert provider["folder"]
        assert provider["folderUid"]
        assert provider["options"]["foldersFromFilesStructure"] is False
        paths[provider["folderUid"]] = PurePosixPath(provider["options"]["path"])
    for folder, board in bundle.dashboards:
        inside = paths[folder.uid].relative_to(GRAFANA_PROVISIONING)
        written = json.loads((out / inside / f"{board['uid']}.json").read_text(encoding="utf-8"))
        assert written == board


def test_alert_rule_groups_follow_the_file_format(out: Path) -> None:
    data = _load(out, "alerting/kotaflow-rules.yaml")
    assert fmt.unknown(data, fmt.RULES_ROOT) == set()
    uids = []
    for group in data["groups"]:
        assert fmt.unknown(group, fmt.GROUP) == set()
        assert set(group) >= fmt.GROUP_REQUIRED
        assert fmt.DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert fmt.unknown(rule, fmt.RULE) == set()
            assert set(rule) >= fmt.RULE_REQUIRED
            assert rule["noDataState"] in fmt.NO_DATA_STATES
            assert rule["execErrState"] in fmt.EXEC_ERR_STATES
            assert fmt.DURATION.match(rule["for"])
            refs = [item["refId"] for item in rule["data"]]
            assert rule["condition"] in refs
            for item in rule["data"]:
                assert fmt.unknown(item, fmt.RULE_DATA) == set()
                assert item["model"]["refId"] == item["refId"]
            uids.append(rule["uid"])
    assert len(uids) == len(set(uids))
    assert all(len(u) <= 40 for u in uids)


def test_alert_rules_mirror_every_level_of_the_alert_rule_file(out: Path, context: Any) -> None:
    data = _load(out, "alerting/kotaflow-rules.yaml")
    groups = {g["name"]: g for g in data["groups"]}
    assert set(groups) == {rule.name for rule in context.rules.rules} | {
        "tinggi_muka_air-reo-rl-01"  # the gauge with its own levels, left out of the rule's
    }
    own = groups["tinggi_muka_air-reo-rl-01"]["rules"]
    assert [r["labels"]["level"] for r in own] == ["Siaga IV", "Siaga III", "Siaga II", "Siaga I"]
    assert {r["labels"]["kotaflow_rule"] for r in own} == {"tinggi_muka_air"}
    query = next(d for d in own[0]["data"] if d["refId"] == "A")["model"]["query"]
    assert 'r.device == "reo-rl-01"' in query
    shared = groups["tinggi_muka_air"]["rules"][0]
    query = next(d for d in shared["data"] if d["refId"] == "A")["model"]["query"]
    assert 'r.device != "reo-rl-01"' in query
    river = groups["tinggi_muka_air"]["rules"]
    assert [r["labels"]["level"] for r in river] == ["Waspada", "Siaga", "Awas"]
    siaga = river[1]
    threshold = next(d for d in siaga["data"] if d["refId"] == "C")["model"]["conditions"][0]
    assert threshold["evaluator"] == {"type": "gte", "params": [250.0]}
    assert threshold["unloadEvaluator"] == {"type": "lt", "params": [240.0]}
    assert siaga["for"] == "300s"


def test_literal_dollars_are_escaped_so_grafana_expands_them_back(
    out: Path, bundle: Bundle
) -> None:
    data = _load(out, "alerting/kotaflow-rules.yaml")
    raw = data["groups"][0]["rules"][0]["annotations"]["summary"]
    assert "{{ $$labels.device }}" in raw
    expanded = fmt.expand(data, ENV)
    built = {r["uid"]: r for g in bundle.alerting.groups for r in g["rules"]}
    for group in expanded["groups"]:
        for rule in group["rules"]:
            original = built[rule["uid"]]
            assert rule["annotations"] == original["annotations"]
            assert rule["labels"] == original["labels"]
            assert rule["data"] == original["data"]


def test_contact_points_and_policies_follow_the_file_format(notifying: Path) -> None:
    out = notifying
    points = _load(out, "alerting/kotaflow-contact-points.yaml")
    assert fmt.unknown(points, fmt.CONTACT_ROOT) == set()
    names = set()
    for point in points["contactPoints"]:
        assert fmt.unknown(point, fmt.CONTACT_POINT) == set()
        for receiver in point["receivers"]:
            assert fmt.unknown(receiver, fmt.RECEIVER) == set()
            assert set(receiver) >= fmt.RECEIVER_REQUIRED
            assert fmt.REQUIRED_SETTINGS[receiver["type"]] <= set(receiver["settings"])
        names.add(point["name"])
    policies = _load(out, "alerting/kotaflow-policies.yaml")
    assert fmt.unknown(policies, fmt.POLICIES_ROOT) == set()
    (tree,) = policies["policies"]
    nodes = [tree, *tree["routes"]]
    for node in nodes:
        assert fmt.unknown(node, fmt.POLICY) == set()
        assert node["receiver"] in names
        for name, operator, _ in node.get("object_matchers", []):
            assert operator in fmt.MATCH_OPERATORS
            assert name == "kotaflow_rule"
    routed = fmt.expand(tree, ENV)["routes"][0]["object_matchers"][0][2]
    assert routed.startswith("^(")
    assert routed.endswith(")$")


def test_rendering_twice_gives_the_same_files(bundle: Bundle, tmp_path: Path) -> None:
    first = render(bundle, tmp_path / "a")
    second = render(bundle, tmp_path / "b")
    texts = [sorted((p.relative_to(tmp_path / d).as_posix(), p.read_bytes()) for p in r.files)
             for d, r in (("a", first), ("b", second))]  # fmt: skip
    assert texts[0] == texts[1]


def test_a_dashboard_no_longer_generated_is_removed(bundle: Bundle, tmp_path: Path) -> None:
    stale = tmp_path / "dashboards" / "id" / "kotaflow-retired.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}", encoding="utf-8")
    done = render(bundle, tmp_path)
    assert not stale.exists()
    assert stale in done.removed


def test_grafana_notifies_no_staff_by_default_so_each_alert_reaches_them_once(
    settings: Settings, tmp_path: Path
) -> None:
    """The compose deployment runs both the alert service and Grafana with these files: with
    receivers configured, Grafana gets the rules (to view and silence) but no contact point
    reaching anyone, its earlier ones deleted and its policy reset; the alert service is
    the only notifier in the compose file."""
    receivers = {
        "bpbd-mail": EmailReceiver(
            kind="email", host="smtp.x.id", sender="k@x.id", to=["pusdalops@bpbd.x.id"]
        ),
        "ops-hook": WebhookReceiver(kind="webhook", url="https://ops.x.id/hook"),
        "bpbd-tg": TelegramReceiver(kind="telegram", chat_id="-100123"),
    }
    alerting = settings.alerting.model_copy(update={"receivers": receivers})
    done = render(build_bundle(settings.model_copy(update={"alerting": alerting})), tmp_path)
    rules = _load(tmp_path, "alerting/kotaflow-rules.yaml")
    assert rules["groups"]  # still visible in Grafana
    points = _load(tmp_path, "alerting/kotaflow-contact-points.yaml")
    assert fmt.unknown(points, fmt.CONTACT_ROOT) == set()
    assert "contactPoints" not in points
    deleted = {item["uid"] for item in points["deleteContactPoints"]}
    assert deleted == {"kf-bpbd-mail", "kf-ops-hook", "kf-bpbd-tg"}
    policies = _load(tmp_path, "alerting/kotaflow-policies.yaml")
    assert fmt.unknown(policies, fmt.POLICIES_ROOT) == set()
    assert policies == {"apiVersion": 1, "resetPolicies": [1]}
    text = "".join(
        path.read_text(encoding="utf-8") for path in done.files if "alerting" in path.parts
    )
    for secret_or_address in ("pusdalops@bpbd.x.id", "https://ops.x.id/hook", "-100123"):
        assert secret_or_address not in text
    compose = yaml.safe_load(Path("deploy/compose.yaml").read_text(encoding="utf-8"))
    notifiers = [
        name for name, svc in compose["services"].items() if svc.get("command") == ["alert"]
    ]
    assert notifiers == ["alert"]
