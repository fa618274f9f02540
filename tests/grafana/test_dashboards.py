"""The generated dashboards: coverage of the catalogue, SDK round trip, bands, languages."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy.grafana import metrics, query
from deploy.grafana.bundle import Bundle
from deploy.grafana.context import BuildContext, alerting_settings
from deploy.grafana.domains import uncovered_types
from deploy.grafana.interpolate import stray_macros
from kotaflow.alerting_settings import DASHBOARD_URL_EXAMPLE
from kotaflow.settings import Settings


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _board(bundle: Bundle, uid: str) -> dict[str, Any]:
    return next(b for _, b in bundle.dashboards if b["uid"] == uid)


def test_every_catalogue_type_belongs_to_a_domain_dashboard(context: BuildContext) -> None:
    assert uncovered_types(context.fleet.catalogue) == set()


def test_every_catalogue_metric_has_a_name_in_both_languages(context: BuildContext) -> None:
    unnamed = set(context.fleet.catalogue.metrics) - set(metrics.NAMES)
    assert unnamed == set()


def test_each_language_has_the_same_dashboards_with_distinct_uids(bundle: Bundle) -> None:
    by_lang: dict[str, list[str]] = {}
    for folder, board in bundle.dashboards:
        by_lang.setdefault(folder.lang.value, []).append(board["uid"])
    assert set(by_lang) == {"id", "en"}
    assert [u + "-en" for u in by_lang["id"]] == by_lang["en"]
    names = {"overview", "air", "weather", "rivers", "water", "noise", "energy", "edge", "device"}
    assert {f"kotaflow-{n}" for n in names | {"pipeline"}} == set(by_lang["id"])


def test_titles_are_translated_and_time_is_wita(bundle: Bundle) -> None:
    indonesian = _board(bundle, "kotaflow-rivers")
    english = _board(bundle, "kotaflow-rivers-en")
    assert (indonesian["title"], english["title"]) == ("Tinggi muka air sungai", "River levels")
    for _, board in bundle.dashboards:
        assert board["timezone"] == "Asia/Makassar"
        assert board["editable"] is False
        assert "kotaflow" in board["tags"]


def test_dashboards_round_trip_through_the_sdk_models(bundle: Bundle) -> None:
    query.register()
    for _, board in bundle.dashboards:
        model = Dashboard.from_json(board)
        again = json.loads(json.dumps(model, cls=JSONEncoder))
        assert again == board, board["uid"]
        targets = [t for p in model.panels or [] for t in getattr(p, "targets", None) or []]
        assert targets
        assert all(isinstance(t, query.FluxQuery) for t in targets), board["uid"]


def test_every_panel_has_one_flux_query_on_the_kotaflow_datasource(bundle: Bundle) -> None:
    for _, board in bundle.dashboards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in _panels(board):
            (target,) = panel["targets"]
            assert target["datasource"] == {"type": "influxdb", "uid": "kotaflow-influxdb"}
            assert target["query"].strip()
            assert stray_macros(target["query"]) == [], (board["uid"], panel["title"])


def test_the_city_maps_colour_devices_by_status_and_by_latest_value(bundle: Bundle) -> None:
    board = _board(bundle, "kotaflow-overview")
    maps = {}
    for geomap in (p for p in board["panels"] if p["type"] == "geomap"):
        (layer,) = geomap["options"]["layers"]
        assert layer["location"] == {
            "mode": "coords",
            "latitude": "latitude",
            "longitude": "longitude",
        }
        maps[layer["config"]["style"]["color"]["field"]] = geomap
    assert set(maps) == {"status", "category"}
    query = maps["status"]["targets"][0]["query"]
    assert "rtg-aq-01" in query  # positions come from the registry
    assert "rtg-aq-04" not in query  # disabled devices are left out
    (override,) = maps["category"]["fieldConfig"]["overrides"]
    (mapping,) = next(p["value"] for p in override["properties"] if p["id"] == "mappings")
    colours = {name: result["color"] for name, result in mapping["options"].items()}
    assert {"Waspada": "yellow", "Siaga": "orange", "Awas": "red"}.items() <= colours.items()
    assert colours["Tidak Sehat"] == "yellow"
    assert colours["Berbahaya"] == "purple"


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [(s.get("value"), s["color"]) for s in steps]


def test_river_gauges_show_the_alert_rule_levels(bundle: Bundle, context: BuildContext) -> None:
    board = _board(bundle, "kotaflow-rivers")
    gauges = [
        p
        for p in _panels(board)
        if p["type"] == "timeseries" and '"water_level"' in p["targets"][0]["query"]
    ]
    rivers = [d for d in context.fleet.registry if d.type == "river_level" and d.enabled]
    assert len(gauges) == len(rivers)
    rule = context.rules.by_name("tinggi_muka_air")
    assert rule is not None
    expected = [(None, "green")] + [
        (level.trigger, colour)
        for level, colour in zip(rule.levels, ["yellow", "orange", "red"], strict=True)
    ]
    own = {d.id for d in rivers if "tinggi_muka_air" in d.alert_levels}
    assert own == {"reo-rl-01"}  # the packaged registry's gauge with its own four levels
    common = [p for p in gauges if not any(p["title"].endswith(f" - {d}") for d in own)]
    assert len(common) == len(gauges) - 1
    assert all(_steps(p) == expected for p in common)
    assert "Waspada" in common[0]["description"]
    assert "Awas" in common[0]["description"]


def test_a_gauge_with_its_own_levels_shows_them(bundle: Bundle) -> None:
    board = _board(bundle, "kotaflow-rivers")
    (gauge,) = [p for p in _panels(board) if p.get("title", "").endswith(" - reo-rl-01")]
    assert _steps(gauge) == [
        (None, "green"),
        (120.0, "blue"),
        (180.0, "yellow"),
        (240.0, "orange"),
        (300.0, "red"),
    ]
    assert "Siaga IV" in gauge["description"]
    assert "Siaga I" in gauge["description"]


def test_pm25_bands_are_the_ispu_categories(bundle: Bundle) -> None:
    board = _board(bundle, "kotaflow-air")
    pm25 = next(
        p
        for p in _panels(board)
        if p["type"] == "timeseries" and '"pm25"' in p["targets"][0]["query"]
    )
    assert [v for v, _ in _steps(pm25)] == [None, 15.6, 55.5, 150.5, 250.5]
    assert [c for _, c in _steps(pm25)] == ["green", "blue", "yellow", "red", "purple"]


def test_rain_is_shown_in_bmkg_classes(bundle: Bundle) -> None:
    board = _board(bundle, "kotaflow-weather")
    hourly = next(p for p in _panels(board) if "every: 1h, fn: sum" in p["targets"][0]["query"])
    assert [v for v, _ in _steps(hourly)] == [None, 1.0, 5.0, 10.0, 20.0]
    today = next(p for p in _panels(board) if "date.truncate" in p["targets"][0]["query"])
    assert [v for v, _ in _steps(today)] == [None, 0.5, 20.0, 50.0, 100.0, 150.0]
    assert "Asia/Makassar" in today["targets"][0]["query"]  # the day starts at WITA midnight


def test_the_device_drill_down_is_where_alert_messages_link(
    bundle: Bundle, settings: Settings
) -> None:
    board = _board(bundle, "kotaflow-device")
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["kecamatan", "type", "device", "metric"]
    link = DASHBOARD_URL_EXAMPLE  # unset by default: no link rather than a wrong one
    assert alerting_settings(settings).dashboard_url is None
    assert f"/d/{board['uid']}/" in link
    assert "var-device={device}" in link
    repeated = [p for p in _panels(board) if p.get("repeat")]
    assert repeated
    assert all(p["repeat"] == "metric" for p in repeated)


def test_the_edge_dashboard_shows_every_edges_backlog_and_link(
    bundle: Bundle, context: BuildContext
) -> None:
    board = _board(bundle, "kotaflow-edge-en")
    first, *series = _panels(board)
    assert (first["type"], first["title"]) == ("table", "Edge gateways: latest report")
    shown = {o["matcher"]["options"] for o in first["fieldConfig"]["overrides"]}
    assert {"queue_messages", "queue_bytes", "oldest_age", "link_uptime", "status"} <= shown
    flux = first["targets"][0]["query"]
    gateways = [d.id for d in context.fleet.registry if d.type == "gateway" and d.enabled]
    assert gateways
    assert all(f'device: "{g}"' in flux for g in gateways)
    metrics_shown = {
        p["targets"][0]["query"].split('r._field == "')[1].split('"')[0] for p in series
    }
    assert metrics_shown == set(context.fleet.catalogue.types["gateway"].metrics)
