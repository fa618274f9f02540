"""Panel and dashboard helpers over grafana-foundation-sdk: the house style in one place.

Every panel gets the kotaflow data source, one Flux query (``refId`` A), a title and
description in the context's language, and - where a metric has bands - thresholds drawn as
coloured areas. :func:`dashboard` sets what all kotaflow dashboards share: time zone
Asia/Makassar, Monday weeks, read-only (they are regenerated from code), the ``kotaflow``
and language tags, and a drop-down linking the other dashboards of the same language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    geomap,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from deploy.grafana.bands import Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.i18n import Text
from deploy.grafana.query import Flux, datasource_ref
from kotaflow.settings import NO_TILES, OSM_TILES

SERIES_NAME = "${__field.labels.device}"
"""Per-device series are named by their device id."""
DEFAULT_TIME = ("now-24h", "now")
NAV_TITLE = Text("Dasbor kotaflow", "kotaflow dashboards")
MAP_TILES = Text("Peta dasar", "Basemap")
NO_MAP = Text(
    "Peta dimatikan (grafana.map_tiles: none): posisi perangkat ada di kolom latitude/longitude.",
    "Maps are off (grafana.map_tiles: none): device positions are in the latitude/longitude "
    "columns.",
)


class _PanelBuilder(Protocol):
    """What every SDK panel builder has (they share no base class)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: DataSourceRef) -> Self: ...
    def with_target(self, target: Builder[Dataquery]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)


def _panel(
    panel: P, ctx: BuildContext, title: Text, query: str, description: str, size: tuple[int, int]
) -> P:
    """The house style every panel shares: title, description, data source, one Flux query."""
    ref = datasource_ref(ctx.datasource_uid)
    return (
        panel.title(title(ctx.lang))
        .description(description)
        .datasource(ref)
        .with_target(Flux(query).datasource(ref))
        .span(size[0])
        .height(size[1])
    )


def thresholds(bands: Bands | None) -> dash.ThresholdsConfig:
    steps = (
        [dm.Threshold(value=band.start, color=band.colour) for band in bands.bands]
        if bands is not None
        else [dm.Threshold(value=None, color="green")]
    )
    return dash.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def describe(ctx: BuildContext, text: Text | None, bands: Bands | None, unit: str) -> str:
    parts = [text(ctx.lang)] if text is not None else []
    if bands is not None:
        parts.append(bands.describe(ctx.lang, unit))
    return "\n\n".join(parts)


def time_series(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    unit: str,
    bands: Bands | None = None,
    description: str = "",
    bars: bool = False,
    width: int = 12,
    height: int = 8,
    series_name: str | None = SERIES_NAME,
) -> timeseries.Panel:
    panel = (
        _panel(timeseries.Panel(), ctx, title, query, description, (width, height))
        .unit(unit)
        .thresholds(thresholds(bands))
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "max"])
        )
    )
    if series_name:
        panel = panel.display_name(series_name)
    if bands is not None:
        panel = panel.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED_AND_AREA)
        )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
    return panel


def bar_gauge(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    unit: str,
    bands: Bands | None = None,
    description: str = "",
    width: int = 12,
    height: int = 8,
) -> bargauge.Panel:
    return (
        _panel(bargauge.Panel(), ctx, title, query, description, (width, height))
        .unit(unit)
        .thresholds(thresholds(bands))
        .display_name(SERIES_NAME)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def single_stat(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    unit: str,
    bands: Bands | None = None,
    description: str = "",
    width: int = 6,
    height: int = 4,
    mappings: Sequence[dm.ValueMapping] = (),
) -> stat.Panel:
    panel = (
        _panel(stat.Panel(), ctx, title, query, description, (width, height))
        .unit(unit)
        .thresholds(thresholds(bands))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return panel.mappings(list(mappings)) if mappings else panel


def data_table(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    description: str = "",
    width: int = 12,
    height: int = 8,
    renames: Mapping[str, Text] | None = None,
    mappings: Sequence[dm.ValueMapping] = (),
    when_empty: Text | None = None,
) -> table.Panel:
    panel = _panel(table.Panel(), ctx, title, query, description, (width, height)).filterable(True)
    for column, label in (renames or {}).items():
        panel = panel.override_by_name(
            column, [dm.DynamicConfigValue("displayName", label(ctx.lang))]
        )
    if when_empty is not None:  # an exception list: empty is the good news
        panel = panel.no_value(when_empty(ctx.lang))
    return panel.mappings(list(mappings)) if mappings else panel


def state_timeline(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    mappings: Sequence[dm.ValueMapping],
    description: str = "",
    width: int = 24,
    height: int = 8,
) -> statetimeline.Panel:
    return (
        _panel(statetimeline.Panel(), ctx, title, query, description, (width, height))
        .display_name(SERIES_NAME)
        .mappings(list(mappings))
    )


def device_map(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    layer_name: Text,
    colour_field: str,
    colours: Bands | None,
    mappings: Sequence[dm.ValueMapping],
    description: str = "",
    width: int = 24,
    height: int = 14,
) -> geomap.Panel | table.Panel:
    """Markers at each row's ``latitude``/``longitude``, coloured by ``colour_field``.

    With ``grafana.map_tiles: none`` the same rows are a table, cells coloured alike: a map
    without a basemap is dots on grey, and Grafana's default basemap is on the internet.
    """
    if ctx.maps.map_tiles == NO_TILES:
        return data_table(
            ctx,
            title,
            query,
            description=f"{description} {NO_MAP(ctx.lang)}".strip(),
            width=width,
            height=height,
        ).override_by_name(
            colour_field,
            [
                *_colour_by(colours, mappings),
                dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"}),
            ],
        )
    markers = (
        common.MapLayerOptions()
        .type("markers")
        .name(layer_name(ctx.lang))
        .location(
            common.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .tooltip(True)
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": colour_field, "fixed": "dark-green"},
                    "size": {"fixed": 9},
                    "opacity": 0.9,
                    "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                    "text": {"mode": "field", "field": "name", "fixed": ""},
                    "textConfig": {"fontSize": 10, "offsetY": -14, "textAlign": "center"},
                },
            }
        )
    )
    return (
        _panel(geomap.Panel(), ctx, title, query, description, (width, height))
        .view(geomap.MapViewConfig().id("fit").all_layers(True).zoom(10))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .basemap(basemap(ctx))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .override_by_name(colour_field, _colour_by(colours, mappings))
    )


def basemap(ctx: BuildContext) -> common.MapLayerOptions:
    """openstreetmap.org's tiles, or a (local) tile server's from ``grafana.map_tiles``."""
    if ctx.maps.map_tiles == OSM_TILES:
        return common.MapLayerOptions().type("osm-standard").name("OpenStreetMap")
    return (
        common.MapLayerOptions()
        .type("xyz")
        .name(MAP_TILES(ctx.lang))
        .config({"url": ctx.maps.map_tiles, "attribution": ctx.maps.map_attribution})
    )


def _colour_by(
    colours: Bands | None, mappings: Sequence[dm.ValueMapping]
) -> list[dm.DynamicConfigValue]:
    """Numbers are coloured by threshold bands, text (a category) by its value mapping."""
    found = [dm.DynamicConfigValue("mappings", list(mappings))]
    if colours is not None:
        found += [
            dm.DynamicConfigValue("thresholds", thresholds(colours).build()),
            dm.DynamicConfigValue("color", {"mode": "thresholds"}),
        ]
    return found


def value_text(values: dict[str, tuple[Text, str]], ctx: BuildContext) -> dm.ValueMap:
    """Map exact values to a label and colour (status codes, on/off)."""
    return dm.ValueMap(
        {
            key: dm.ValueMappingResult(text=label(ctx.lang), color=colour, index=index)
            for index, (key, (label, colour)) in enumerate(values.items())
        }
    )


def dashboard(ctx: BuildContext, name: str, title: Text, description: Text) -> dash.Dashboard:
    return (
        dash.Dashboard(title(ctx.lang))
        .uid(ctx.uid(name))
        .description(description(ctx.lang))
        .tags(["kotaflow", ctx.lang.value])
        .timezone(ctx.timezone)
        .week_start("monday")
        .time(*DEFAULT_TIME)
        .refresh("1m")
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink(NAV_TITLE(ctx.lang))
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["kotaflow", ctx.lang.value])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(False)
        )
    )


def finish(builder: dash.Dashboard) -> dm.Dashboard:
    """Build, and number the panels 1..n in order (stable ids for links and alert rules)."""
    model = builder.build()
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    return model
