"""``grafana.map_tiles``: the dashboards' maps load tiles only from where the settings say."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from deploy.grafana.bundle import Bundle, build_bundle
from kotaflow.settings import GrafanaSettings, Settings, SettingsError, load_settings

LOCAL_TILES = "http://tiles.kotaflow.internal:8080/styles/basic/{z}/{x}/{y}.png"


def _bundle(settings: Settings, **grafana: str) -> Bundle:
    return build_bundle(settings.model_copy(update={"grafana": GrafanaSettings(**grafana)}))


def _panels(bundle: Bundle) -> list[dict[str, Any]]:
    return [p for _, board in bundle.dashboards for p in board["panels"] if p["type"] != "row"]


def _geomaps(bundle: Bundle) -> list[dict[str, Any]]:
    return [p for p in _panels(bundle) if p["type"] == "geomap"]


def test_default_maps_use_openstreetmap(bundle: Bundle) -> None:
    maps = _geomaps(bundle)
    assert maps
    assert {m["options"]["basemap"]["type"] for m in maps} == {"osm-standard"}


def test_a_local_tile_server_is_the_only_tile_source(settings: Settings) -> None:
    bundle = _bundle(settings, map_tiles=LOCAL_TILES, map_attribution="Pemkab Manggarai")
    maps = _geomaps(bundle)
    assert maps
    for panel in maps:
        assert panel["options"]["basemap"]["type"] == "xyz"
        assert panel["options"]["basemap"]["config"] == {
            "url": LOCAL_TILES,
            "attribution": "Pemkab Manggarai",
        }
    text = json.dumps([board for _, board in bundle.dashboards])
    assert "osm-standard" not in text
    assert not re.search(r"openstreetmap\.org|arcgisonline|cartocdn|basemaps\.carto", text)


def test_without_tiles_the_maps_become_tables_with_the_same_rows(
    settings: Settings, bundle: Bundle
) -> None:
    offline = _bundle(settings, map_tiles="none")
    assert _geomaps(offline) == []
    before = {(p["title"], p["targets"][0]["query"]) for p in _geomaps(bundle)}
    tables = {(p["title"], p["targets"][0]["query"]): p for p in _panels(offline)}
    assert before <= set(tables)  # every map is still there, same title, same query
    for key in before:
        panel = tables[key]
        assert panel["type"] == "table"
        assert "grafana.map_tiles: none" in panel["description"]
        (override,) = panel["fieldConfig"]["overrides"]
        properties = {p["id"]: p["value"] for p in override["properties"]}
        assert properties["custom.cellOptions"] == {"type": "color-background"}
        assert properties["mappings"]  # a status or category keeps its colour


@pytest.mark.parametrize(
    "value", ["https://tiles.example.id/tiles.png", "tiles.example.id/{z}/{x}/{y}", "off"]
)
def test_a_tile_setting_that_cannot_work_is_refused_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOTAFLOW_GRAFANA__MAP_TILES", value)
    with pytest.raises(SettingsError, match=r"grafana\.map_tiles: .*KOTAFLOW_GRAFANA__MAP_TILES"):
        load_settings()
