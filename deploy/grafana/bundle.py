"""Everything kotaflow gives Grafana, generated once: data source, folders, dashboards, alerting.

``grafana render`` writes a :class:`Bundle` as provisioning files, ``grafana sync`` pushes the
same bundle through the HTTP API, so the two can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy.grafana import i18n
from deploy.grafana.alerting import AlertingObjects, build_alerting
from deploy.grafana.context import alerting_settings, load_context
from deploy.grafana.dashboards import build_all
from deploy.grafana.datasource import TOKEN_ENV, datasource
from deploy.grafana.envref import EnvRef, Secret
from deploy.grafana.i18n import Lang
from kotaflow.settings import Settings


@dataclass(frozen=True, slots=True)
class Folder:
    uid: str
    title: str
    lang: Lang


@dataclass(frozen=True, slots=True)
class Bundle:
    datasource: dict[str, Any]
    folders: list[Folder]
    dashboards: list[tuple[Folder, dict[str, Any]]]
    alerting: AlertingObjects


def dashboard_folder(lang: Lang) -> Folder:
    return Folder("kotaflow" + lang.uid_suffix, i18n.FOLDER(lang), lang)


def dashboard_json(model: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana stores it (the SDK's JSON encoding)."""
    result: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return result


def build_bundle(
    settings: Settings,
    langs: Sequence[Lang] = tuple(Lang),
    token: Secret | None = None,
    influx_url: str | None = None,
) -> Bundle:
    """Load catalogue, registry and rules once; build every object for ``langs``."""
    base = load_context(settings, Lang.ID)
    folders = [dashboard_folder(lang) for lang in langs]
    dashboards = [
        (folder, dashboard_json(board))
        for folder in folders
        for board in build_all(base.in_lang(folder.lang))
    ]
    return Bundle(
        datasource=datasource(settings, token or EnvRef(TOKEN_ENV), influx_url),
        folders=folders,
        dashboards=dashboards,
        alerting=build_alerting(base, alerting_settings(settings)),
    )
