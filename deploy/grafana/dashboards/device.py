"""Device drill-down: pick kecamatan, type and device; see every metric of that device.

Variables are Flux-backed (``schema.tagValues`` / ``schema.fieldKeys`` on the telemetry
bucket), each narrowing the next: kecamatan -> type -> device -> metric. The per-metric
panels repeat over ``metric``. The uid is ``kotaflow-device`` with variable ``device``: alert
messages link here (``alerting.dashboard_url``).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.units import NoUnit

from deploy.grafana import flux, i18n, panels
from deploy.grafana.context import BuildContext
from deploy.grafana.fleetrows import registry_rows
from deploy.grafana.i18n import Text
from deploy.grafana.query import datasource_ref

NAME = "device"
TITLE = Text("Detail perangkat", "Device drill-down")
DESCRIPTION = Text(
    "Semua besaran satu perangkat: nilai terakhir, deret waktu, rollup 1 menit dan peringatan.",
    "Every metric of one device: latest values, time series, 1-minute rollups and alerts.",
)
KECAMATAN, TYPE, DEVICE, METRIC = "kecamatan", "type", "device", "metric"
ALL_VALUE = ".*"
"""``All`` for the regex-matched variables (Grafana inserts a custom all value unescaped)."""


def variables(ctx: BuildContext) -> list[dash.QueryVariable]:
    bucket = ctx.influx.telemetry_bucket
    types = list(ctx.fleet.catalogue.types)
    ref = datasource_ref(ctx.datasource_uid)

    def variable(
        name: str, label: Text, query: str, *, include_all: bool, multi: bool = False
    ) -> dash.QueryVariable:
        built = (
            dash.QueryVariable(name)
            .label(label(ctx.lang))
            .datasource(ref)
            .query(query)
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(multi)
            .include_all(include_all)
        )
        return built.all_value(ALL_VALUE) if include_all else built

    return [
        variable(
            KECAMATAN, i18n.KECAMATAN, flux.tag_values(bucket, "kecamatan", types), include_all=True
        ),
        variable(
            TYPE,
            i18n.TYPE,
            flux.tag_values(bucket, "type", types, f"r.kecamatan =~ {flux.var_regex(KECAMATAN)}"),
            include_all=True,
        ),
        variable(
            DEVICE,
            i18n.DEVICE,
            flux.tag_values(
                bucket,
                "device",
                types,
                f"r.kecamatan =~ {flux.var_regex(KECAMATAN)} and r.type =~ {flux.var_regex(TYPE)}",
            ),
            include_all=False,
        ),
        variable(
            METRIC,
            i18n.METRIC,
            flux.field_keys(bucket, types, f"r.device == {flux.var(DEVICE)}"),
            include_all=True,
            multi=True,
        ),
    ]


def build(ctx: BuildContext) -> list[dm.Dashboard]:
    telemetry, rollups = ctx.influx.telemetry_bucket, ctx.influx.rollups_bucket
    catalogue = ctx.fleet.catalogue
    types = list(catalogue.types)
    units = {name: metric.unit for name, metric in catalogue.metrics.items()}
    board = (
        panels.dashboard(ctx, NAME, TITLE, DESCRIPTION)
        .variables(list(variables(ctx)))
        .with_panel(
            panels.data_table(
                ctx,
                Text("Identitas perangkat", "Device"),
                flux.device_info(registry_rows(ctx), DEVICE),
                renames={
                    "name": i18n.NAME,
                    "device": i18n.DEVICE,
                    "type": i18n.TYPE,
                    "kecamatan": i18n.KECAMATAN,
                },
                width=12,
                height=5,
            )
        )
        .with_panel(
            panels.data_table(
                ctx,
                Text("Nilai terakhir", "Latest values"),
                flux.latest_of_device(telemetry, types, DEVICE, units),
                renames={
                    "_time": i18n.TIME,
                    "_field": i18n.METRIC,
                    "_value": i18n.VALUE,
                    "unit": Text("Satuan", "Unit"),
                },
                width=12,
                height=10,
            )
        )
        .with_panel(
            panels.data_table(
                ctx,
                Text("Peringatan perangkat ini", "Alerts of this device"),
                flux.alerts_latest(
                    ctx.influx.alerts_bucket,
                    ctx.influx.alerts_measurement,
                    firing_only=False,
                    device_var=DEVICE,
                ),
                when_empty=Text(
                    "Tidak ada peringatan dalam rentang waktu ini", "No alerts in this time range"
                ),
                width=24,
                height=6,
            )
        )
        .with_row(dash.Row(Text("Deret waktu per besaran", "Time series per metric")(ctx.lang)))
        .with_panel(
            panels.time_series(
                ctx,
                Text("${metric}", "${metric}"),
                flux.device_metric(telemetry, types, DEVICE, METRIC),
                unit=NoUnit,
                series_name=None,
                width=12,
            )
            .repeat(METRIC)
            .repeat_direction("h")
            .max_per_row(2)
        )
        .with_row(
            dash.Row(
                Text(
                    "Rollup 1 menit (min / rata-rata / maks)", "1-minute rollups (min / mean / max)"
                )(ctx.lang)
            )
        )
        .with_panel(
            panels.time_series(
                ctx,
                Text("${metric} - rollup", "${metric} - rollup"),
                flux.device_rollups(rollups, DEVICE, METRIC),
                unit=NoUnit,
                series_name=None,
                width=12,
            )
            .repeat(METRIC)
            .repeat_direction("h")
            .max_per_row(2)
        )
    )
    return [panels.finish(board)]
