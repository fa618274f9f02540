"""``kotaflow grafana render DIR``: the bundle as Grafana provisioning files.

Layout (``DIR`` is mounted or copied to Grafana's provisioning directory, by default
``/etc/grafana/provisioning``)::

    DIR/datasources/kotaflow.yaml            the InfluxDB (Flux) data source
    DIR/dashboards/kotaflow.yaml             one file provider per language (folder each)
    DIR/dashboards/<lang>/<uid>.json         the dashboards
    DIR/alerting/kotaflow-rules.yaml         rule groups mirroring the alert rule file
    DIR/alerting/kotaflow-contact-points.yaml
    DIR/alerting/kotaflow-policies.yaml

Formats follow Grafana's provisioning documentation (``apiVersion: 1``). Every value in a
YAML file goes through :func:`deploy.grafana.envref.for_file` (``$`` doubled, secrets as
``${ENV}``); dashboard JSON is not expanded by Grafana and is written as built. Rendering
twice gives identical files; stale ``kotaflow-*.json`` dashboards of a language are removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from deploy.grafana.bundle import Bundle, Folder
from deploy.grafana.envref import env_refs, for_file

GRAFANA_PROVISIONING = PurePosixPath("/etc/grafana/provisioning")
"""Grafana's provisioning directory in the official image and the Debian package."""
ORG_ID = 1
UPDATE_INTERVAL_S = 60
RULE_FILE_KEYS = (
    "uid",
    "title",
    "condition",
    "data",
    "noDataState",
    "execErrState",
    "for",
    "annotations",
    "labels",
    "isPaused",
    "notification_settings",
)
"""What a rule carries in a provisioning file (the API's folderUID/ruleGroup/orgID move to
the group)."""


@dataclass
class Rendered:
    files: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    env: set[str] = field(default_factory=set)
    """Environment variables Grafana needs (secrets referenced by the files)."""
    notes: list[str] = field(default_factory=list)


def datasources_file(bundle: Bundle) -> dict[str, Any]:
    entry = {"orgId": ORG_ID, **bundle.datasource, "editable": False}
    return {"apiVersion": 1, "datasources": [entry]}


def providers_file(bundle: Bundle, grafana_dir: PurePosixPath) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": folder.uid,
                "orgId": ORG_ID,
                "folder": folder.title,
                "folderUid": folder.uid,
                "type": "file",
                "disableDeletion": False,
                "updateIntervalSeconds": UPDATE_INTERVAL_S,
                "allowUiUpdates": False,
                "options": {
                    "path": str(grafana_dir / "dashboards" / folder.lang.value),
                    "foldersFromFilesStructure": False,
                },
            }
            for folder in bundle.folders
        ],
    }


def rules_file(bundle: Bundle) -> dict[str, Any]:
    alerting = bundle.alerting
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG_ID,
                "name": group["title"],
                "folder": alerting.folder_title,
                "interval": f"{group['interval']}s",
                "rules": [
                    {key: rule[key] for key in RULE_FILE_KEYS if key in rule}
                    | {"isPaused": bool(rule.get("isPaused", False))}
                    for rule in group["rules"]
                ],
            }
            for group in alerting.groups
        ],
    }


def contact_points_file(bundle: Bundle) -> dict[str, Any]:
    if not bundle.alerting.notifies:  # one source of notifications: remove ours, add none
        retired = bundle.alerting.retired_contact_uids
        return {
            "apiVersion": 1,
            "deleteContactPoints": [{"orgId": ORG_ID, "uid": uid} for uid in retired],
        }
    return {
        "apiVersion": 1,
        "contactPoints": [
            {
                "orgId": ORG_ID,
                "name": point["name"],
                "receivers": [
                    {
                        "uid": point["uid"],
                        "type": point["type"],
                        "settings": point["settings"],
                        "disableResolveMessage": bool(point.get("disableResolveMessage", False)),
                    }
                ],
            }
            for point in bundle.alerting.contact_points
        ],
    }


def policies_file(bundle: Bundle) -> dict[str, Any]:
    if not bundle.alerting.notifies:
        return {"apiVersion": 1, "resetPolicies": [ORG_ID]}
    return {"apiVersion": 1, "policies": [{"orgId": ORG_ID, **bundle.alerting.policy}]}


def render(
    bundle: Bundle, out_dir: Path, grafana_dir: PurePosixPath = GRAFANA_PROVISIONING
) -> Rendered:
    """Write every provisioning file under ``out_dir``."""
    done = Rendered(notes=[f"contact point skipped: {s}" for s in bundle.alerting.skipped])
    yaml_files = {
        Path("datasources/kotaflow.yaml"): datasources_file(bundle),
        Path("dashboards/kotaflow.yaml"): providers_file(bundle, grafana_dir),
        Path("alerting/kotaflow-rules.yaml"): rules_file(bundle),
        Path("alerting/kotaflow-contact-points.yaml"): contact_points_file(bundle),
        Path("alerting/kotaflow-policies.yaml"): policies_file(bundle),
    }
    for relative, content in yaml_files.items():
        done.env |= env_refs(content)
        done.files.append(_write(out_dir / relative, dump_yaml(for_file(content))))
    for folder in bundle.folders:
        done.removed += _clear_dashboards(out_dir, folder)
    for folder, board in bundle.dashboards:
        path = out_dir / "dashboards" / folder.lang.value / f"{board['uid']}.json"
        text = json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        done.files.append(_write(path, text))
    done.removed = [p for p in done.removed if p not in done.files]
    return done


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (Flux queries) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(content: Any) -> str:
    header = "# Generated by `kotaflow grafana render`; edit the code, not this file.\n"
    body = yaml.dump(content, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _clear_dashboards(out_dir: Path, folder: Folder) -> list[Path]:
    stale = sorted((out_dir / "dashboards" / folder.lang.value).glob("kotaflow-*.json"))
    for path in stale:
        path.unlink()
    return stale


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
