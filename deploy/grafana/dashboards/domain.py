"""One dashboard per domain (air, weather and rain, rivers, water, noise, energy).

Generated from the catalogue: a row per metric of the domain's device types, drawn the way
the metric is read - rain as hourly and daily totals in BMKG classes, PM as ISPU bands and
24-hour means, river levels one panel per gauge with its Waspada / Siaga / Awas levels,
meter indexes as daily increase, lamp state as a timeline, anything else as a time series
with the bands of the alert rule that watches it.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana import bands, flux, i18n, metrics, panels, status
from deploy.grafana.bands import Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.domains import COUNTERS, DOMAINS, Domain, domain_metrics
from deploy.grafana.fleetrows import registry_rows
from deploy.grafana.i18n import Text
from devices.catalogue import Metric
from processors.runtime.influx import flux_string

PanelBuilder = Builder[dm.Panel]

HOURLY = Text("{name} per jam", "Hourly {name}")
TODAY = Text("{name} hari ini", "{name} today")
MEAN_24H = Text("{name} rata-rata 24 jam (ISPU)", "{name} 24-hour mean (ISPU)")
DAILY_INCREASE = Text("{name}: pertambahan harian", "{name}: daily increase")
AT_DEVICE = Text("{name} - {device}", "{name} - {device}")
DEVICE_TABLE = Text("Perangkat", "Devices")
LATEST = Text("{name}: laporan terakhir", "{name}: latest report")


def build(ctx: BuildContext) -> list[dm.Dashboard]:
    catalogue = ctx.fleet.catalogue
    return [
        _domain(ctx, domain)
        for domain in DOMAINS
        if all(type_name in catalogue.types for type_name in domain.types)
    ]


def _domain(ctx: BuildContext, domain: Domain) -> dm.Dashboard:
    board = panels.dashboard(ctx, domain.name, domain.title, domain.description)
    catalogue = ctx.fleet.catalogue
    if domain.latest:
        board = board.with_panel(_latest_table(ctx, domain))
    for metric_name in domain_metrics(catalogue, domain):
        types = [t for t in domain.types if metric_name in catalogue.types[t].metrics]
        board = board.with_row(dash.Row(metrics.name(catalogue.metrics[metric_name])(ctx.lang)))
        for panel in _metric_panels(ctx, metric_name, types):
            board = board.with_panel(panel)
    if domain.latest:  # its table already lists every device with its status
        return panels.finish(board)
    board = board.with_row(dash.Row(DEVICE_TABLE(ctx.lang))).with_panel(
        status.table(
            ctx,
            DEVICE_TABLE,
            flux.device_status(ctx.influx.telemetry_bucket, registry_rows(ctx, domain.types)),
            size=(24, 8),
        )
    )
    return panels.finish(board)


def _latest_table(ctx: BuildContext, domain: Domain) -> PanelBuilder:
    """One row per device: its latest report's ``domain.latest`` metrics, last report, age
    and status (silent: nothing for the type's silence limit)."""
    shown = {m: ctx.fleet.catalogue.metrics[m] for m in domain.latest}
    panel = status.table(
        ctx,
        LATEST.format(name=domain.title(ctx.lang)),
        flux.latest_report(
            ctx.influx.telemetry_bucket, registry_rows(ctx, domain.types), domain.latest
        ),
        size=(24, 8),
        columns=("name", "device", "kecamatan", "last_seen", "age_s", "status"),
        more={name: metrics.name(metric) for name, metric in shown.items()},
    )
    for name, metric in shown.items():
        unit = metrics.grafana_unit(metric.unit)
        panel = panel.override_by_name(name, [dm.DynamicConfigValue("unit", unit)])
    return panel


def _metric_panels(ctx: BuildContext, name: str, types: Sequence[str]) -> list[PanelBuilder]:
    metric = ctx.fleet.catalogue.metrics[name]
    title = metrics.name(metric)
    unit = metrics.grafana_unit(metric.unit)
    shown = metrics.shown(metric.unit)
    bucket = ctx.influx.telemetry_bucket
    about = Text(metric.description, metric.description)

    if name == "rain":
        hourly, daily = bands.rain(ctx.rules, "1h"), bands.rain(ctx.rules, "24h")
        return _series_and_summary(
            ctx,
            metric,
            (HOURLY.format(name=title(ctx.lang)), hourly),
            flux.metric_series(bucket, types, name, every="1h", fn="sum"),
            (TODAY.format(name=title(ctx.lang)), daily),
            flux.window_total_by_device(bucket, types, name, fn="sum", timezone=ctx.timezone),
            bars=True,
        )
    ispu = bands.ispu(ctx.rules, name)
    if ispu is not None:
        return _series_and_summary(
            ctx,
            metric,
            (title, ispu),
            flux.metric_series(bucket, types, name),
            (MEAN_24H.format(name=title(ctx.lang)), ispu),
            flux.mean_by_device(bucket, types, name, start="-24h"),
        )
    if name in COUNTERS:
        return [
            panels.time_series(
                ctx,
                DAILY_INCREASE.format(name=title(ctx.lang)),
                flux.metric_series(
                    bucket, types, name, every="1d", fn="spread", local_days=ctx.timezone
                ),
                unit=unit,
                bars=True,
                description=about(ctx.lang),
                width=24,
            )
        ]
    if metric.boolean:
        on_off = panels.value_text({"0": (i18n.OFF, "#5c5c5c"), "1": (i18n.ON, "yellow")}, ctx)
        return [
            panels.state_timeline(
                ctx,
                title,
                flux.metric_series(bucket, types, name, fn="last"),
                mappings=[on_off],
                description=about(ctx.lang),
            )
        ]
    if name == "water_level":
        return [_gauge_panel(ctx, name, device, types) for device in _devices(ctx, types)]
    metric_bands = bands.for_metric(ctx.rules, name, types)
    return [
        panels.time_series(
            ctx,
            title,
            flux.metric_series(bucket, types, name),
            unit=unit,
            bands=metric_bands,
            description=panels.describe(ctx, about, metric_bands, shown),
            width=24,
        )
    ]


def _series_and_summary(
    ctx: BuildContext,
    metric: Metric,
    series: tuple[Text, Bands | None],
    series_query: str,
    summary: tuple[Text, Bands | None],
    summary_query: str,
    *,
    bars: bool = False,
) -> list[PanelBuilder]:
    """A time series (two thirds) beside a per-device bar gauge of a summary (one third)."""
    unit, shown = metrics.grafana_unit(metric.unit), metrics.shown(metric.unit)
    about = Text(metric.description, metric.description)
    (series_title, series_bands), (summary_title, summary_bands) = series, summary
    return [
        panels.time_series(
            ctx,
            series_title,
            series_query,
            unit=unit,
            bands=series_bands,
            bars=bars,
            description=panels.describe(ctx, about, series_bands, shown),
            width=16,
        ),
        panels.bar_gauge(
            ctx,
            summary_title,
            summary_query,
            unit=unit,
            bands=summary_bands,
            description=panels.describe(ctx, about, summary_bands, shown),
            width=8,
        ),
    ]


def _devices(ctx: BuildContext, types: Sequence[str]) -> list[str]:
    return [row.device for row in registry_rows(ctx, types)]


def _gauge_panel(
    ctx: BuildContext, name: str, device_id: str, types: Sequence[str]
) -> PanelBuilder:
    """One river gauge with the levels of the rule that covers it (per-gauge rules win)."""
    metric = ctx.fleet.catalogue.metrics[name]
    device = ctx.fleet.registry.by_id[device_id]
    gauge_bands = bands.for_metric(ctx.rules, name, types, device=device_id)
    title = AT_DEVICE.format(name=device.name, device=device_id)
    return panels.time_series(
        ctx,
        title,
        flux.metric_series(
            ctx.influx.telemetry_bucket, types, name, extra=f"r.device == {flux_string(device_id)}"
        ),
        unit=metrics.grafana_unit(metric.unit),
        bands=gauge_bands,
        description=panels.describe(
            ctx, Text(device.kecamatan, device.kecamatan), gauge_bands, metrics.shown(metric.unit)
        ),
        series_name=None,
    )
