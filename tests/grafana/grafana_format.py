"""Grafana's provisioning file formats, field by field, as its documentation describes them.

Sources (Grafana docs, v11): ``administration/provisioning`` (data sources, dashboard
providers, environment variables: ``$NAME`` / ``${NAME}`` expanded in values, ``$$`` for a
literal ``$``) and ``alerting/set-up/provision-alerting-resources/file-provisioning``
(rule groups, contact points, notification policies).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DATASOURCE_ROOT = {"apiVersion", "datasources", "deleteDatasources", "prune"}
DATASOURCE = {
    "name", "type", "access", "orgId", "uid", "url", "user", "database", "basicAuth",
    "basicAuthUser", "withCredentials", "isDefault", "jsonData", "secureJsonData", "version",
    "editable",
}  # fmt: skip
DATASOURCE_REQUIRED = {"name", "type", "access"}
ACCESS = {"proxy", "direct"}
INFLUX_FLUX_JSON = {"version", "organization", "defaultBucket", "tlsSkipVerify", "httpMode",
                    "timeInterval", "maxSeries"}  # fmt: skip

PROVIDERS_ROOT = {"apiVersion", "providers"}
PROVIDER = {"name", "orgId", "folder", "folderUid", "type", "disableDeletion",
            "updateIntervalSeconds", "allowUiUpdates", "options"}  # fmt: skip
PROVIDER_OPTIONS = {"path", "foldersFromFilesStructure"}

RULES_ROOT = {"apiVersion", "groups", "deleteRules"}
GROUP = {"orgId", "name", "folder", "interval", "rules"}
GROUP_REQUIRED = {"name", "folder", "interval", "rules"}
RULE = {"uid", "title", "condition", "data", "dashboardUid", "panelId", "noDataState",
        "execErrState", "for", "annotations", "labels", "isPaused",
        "notification_settings"}  # fmt: skip
RULE_REQUIRED = {"uid", "title", "condition", "data", "for"}
RULE_DATA = {"refId", "datasourceUid", "model", "relativeTimeRange", "queryType"}
NO_DATA_STATES = {"NoData", "Alerting", "OK"}
EXEC_ERR_STATES = {"Error", "Alerting", "OK"}

CONTACT_ROOT = {"apiVersion", "contactPoints", "deleteContactPoints"}
CONTACT_POINT = {"orgId", "name", "receivers"}
RECEIVER = {"uid", "type", "settings", "disableResolveMessage"}
RECEIVER_REQUIRED = {"uid", "type", "settings"}
REQUIRED_SETTINGS = {
    "email": {"addresses"},
    "telegram": {"bottoken", "chatid"},
    "webhook": {"url"},
}

POLICIES_ROOT = {"apiVersion", "policies", "resetPolicies"}
POLICY = {"orgId", "receiver", "group_by", "matchers", "object_matchers",
          "mute_time_intervals", "group_wait", "group_interval", "repeat_interval", "routes",
          "continue"}  # fmt: skip
MATCH_OPERATORS = {"=", "!=", "=~", "!~"}
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w)$")

_EXPANSION = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")


def expand(value: Any, env: Mapping[str, str]) -> Any:
    """Grafana's environment expansion of a provisioning file's values."""
    if isinstance(value, str):

        def one(found: re.Match[str]) -> str:
            if found.group(0) == "$$":
                return "$"
            return env.get(found.group(1) or found.group(2), "")

        return _EXPANSION.sub(one, value)
    if isinstance(value, Mapping):
        return {key: expand(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, env) for item in value]
    return value


def unknown(found: Mapping[str, Any], allowed: set[str]) -> set[str]:
    return set(found) - allowed
