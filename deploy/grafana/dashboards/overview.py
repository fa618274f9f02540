"""City overview: every device on the map by status, what is silent, what is firing."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.dashboard import Dashboard
from grafana_foundation_sdk.models.units import DurationSeconds, NoUnit

from deploy.grafana import flux, i18n, panels, status
from deploy.grafana.bands import Band, Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.fleetrows import registry_rows
from deploy.grafana.i18n import Text

NAME = "overview"
TITLE = Text("Ikhtisar Kota - Kabupaten Manggarai", "City overview - Manggarai regency")
DESCRIPTION = Text(
    "Semua perangkat di peta menurut status, perangkat senyap dan peringatan yang aktif.",
    "Every device on the map by status, silent devices and firing alerts.",
)
ALERT_COLUMNS = {
    "_time": Text("Sejak", "Since"),
    "severity": Text("Tingkat", "Severity"),
    "rule": Text("Aturan", "Rule"),
    "level": Text("Status", "Level"),
    "device": i18n.DEVICE,
    "kecamatan": i18n.KECAMATAN,
    "type": i18n.TYPE,
    "value": i18n.VALUE,
    "threshold": Text("Ambang", "Threshold"),
}
FIRING = Bands(
    (Band(None, "green", Text("Tidak ada", "None")), Band(1, "red", Text("Ada", "Some"))),
    Text("Peringatan", "Alerts"),
)
DEVICE_COLUMNS = {
    "name": i18n.NAME,
    "device": i18n.DEVICE,
    "type": i18n.TYPE,
    "kecamatan": i18n.KECAMATAN,
    "metric": i18n.METRIC,
    "value": i18n.VALUE,
    "unit": Text("Satuan", "Unit"),
    "last_seen": i18n.LAST_SEEN,
    "age_s": i18n.AGE,
    "status": i18n.STATUS,
}


def build(ctx: BuildContext) -> list[Dashboard]:
    rows = registry_rows(ctx)
    telemetry = ctx.influx.telemetry_bucket
    alerts = (ctx.influx.alerts_bucket, ctx.influx.alerts_measurement)
    board = (
        panels.dashboard(ctx, NAME, TITLE, DESCRIPTION)
        .with_panel(
            panels.single_stat(
                ctx,
                Text("Perangkat aktif", "Devices reporting"),
                flux.device_count(telemetry, rows, status.REPORTING),
                unit=NoUnit,
                width=8,
            )
        )
        .with_panel(
            panels.single_stat(
                ctx,
                Text("Perangkat senyap", "Silent devices"),
                flux.device_count(telemetry, rows, status.SILENT),
                unit=NoUnit,
                bands=status.COLOURS,
                width=8,
            )
        )
        .with_panel(
            panels.single_stat(
                ctx,
                Text("Peringatan aktif", "Firing alerts"),
                flux.alerts_count(*alerts),
                unit=NoUnit,
                bands=FIRING,
                width=8,
            )
        )
        .with_panel(
            panels.device_map(
                ctx,
                Text("Peta perangkat", "Device map"),
                flux.device_status(telemetry, rows),
                layer_name=i18n.DEVICES,
                colour_field="status",
                colours=status.COLOURS,
                mappings=[status.mapping(ctx)],
                description=Text(
                    "Warna menurut status: hijau aktif, merah senyap, abu-abu belum pernah "
                    "melapor. Arahkan kursor ke titik untuk nilai terakhir.",
                    "Colour by status: green reporting, red silent, grey never reported. "
                    "Hover a marker for its latest value.",
                )(ctx.lang),
                width=16,
            )
        )
        .with_panel(
            panels.data_table(
                ctx,
                Text("Perangkat senyap", "Silent devices"),
                flux.device_status(telemetry, rows, only_silent=True),
                renames={k: v for k, v in DEVICE_COLUMNS.items() if k in flux.SILENT_COLUMNS},
                mappings=[status.mapping(ctx)],
                width=8,
                height=14,
            ).override_by_name("age_s", [_unit(DurationSeconds)])
        )
        .with_panel(
            panels.data_table(
                ctx,
                Text("Peringatan aktif", "Firing alerts"),
                flux.alerts_latest(*alerts, firing_only=True),
                renames=ALERT_COLUMNS,
                width=24,
            )
        )
        .with_panel(
            panels.data_table(
                ctx,
                Text("Nilai terakhir semua perangkat", "Latest value of every device"),
                flux.device_status(telemetry, rows),
                renames=DEVICE_COLUMNS,
                mappings=[status.mapping(ctx)],
                width=24,
                height=12,
            ).override_by_name("age_s", [_unit(DurationSeconds)])
        )
    )
    return [panels.finish(board)]


def _unit(unit: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue("unit", unit)
