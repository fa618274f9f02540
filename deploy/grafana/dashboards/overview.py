"""City overview: every device on the map by status, what is silent, what is firing."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.dashboard import Dashboard
from grafana_foundation_sdk.models.units import NoUnit

from deploy.grafana import flux, i18n, panels, status
from deploy.grafana.bands import Band, Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.fleetrows import registry_rows
from deploy.grafana.flux import RegistryRow
from deploy.grafana.i18n import Text

NAME = "overview"
TITLE = Text("Ikhtisar Kota - Kabupaten Manggarai", "City overview - Manggarai regency")
DESCRIPTION = Text(
    "Semua perangkat di peta menurut status, perangkat senyap dan peringatan yang aktif.",
    "Every device on the map by status, silent devices and firing alerts.",
)
ALERT_COLUMNS = MappingProxyType(
    {
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
)
STATUS_MAP = Text(
    "Hijau: melapor; merah: senyap; abu-abu: belum pernah melapor. Arahkan kursor ke titik "
    "untuk nilai terakhir.",
    "Green: reporting; red: silent; grey: never reported. Hover a marker for its latest value.",
)
VALUE_MAP = Text(
    "Warna menurut kategori nilai terakhir besaran utama tiap perangkat: ISPU untuk PM2.5, "
    "kelas BMKG untuk intensitas hujan, Waspada/Siaga/Awas untuk sungai, baku mutu kebisingan.",
    "Colour by the category of each device's latest headline value: ISPU for PM2.5, BMKG "
    "classes for rain intensity, Waspada/Siaga/Awas for rivers, noise limits.",
)
NO_ALERTS = Text("Tidak ada peringatan aktif", "No alert is firing")
REPORTING = Text("Perangkat aktif", "Devices reporting")
SILENT = Text("Perangkat senyap", "Silent devices")
FIRING_TITLE = Text("Peringatan aktif", "Firing alerts")
FIRING = Bands(
    (Band(None, "green", Text("Tidak ada", "None")), Band(1, "red", Text("Ada", "Some"))),
    Text("Peringatan", "Alerts"),
)


def build(ctx: BuildContext) -> list[Dashboard]:
    rows = registry_rows(ctx)
    telemetry = ctx.influx.telemetry_bucket
    alerts = (ctx.influx.alerts_bucket, ctx.influx.alerts_measurement)
    counts = (
        (REPORTING, flux.device_count(telemetry, rows, status.REPORTING), None),
        (SILENT, flux.device_count(telemetry, rows, status.SILENT), status.COLOURS),
        (FIRING_TITLE, flux.alerts_count(*alerts), FIRING),
    )
    board = panels.dashboard(ctx, NAME, TITLE, DESCRIPTION)
    for title, query, bands in counts:
        board = board.with_panel(
            panels.single_stat(ctx, title, query, unit=NoUnit, bands=bands, width=8)
        )
    status_map = panels.device_map(
        ctx,
        Text("Peta status perangkat", "Device status map"),
        flux.device_status(telemetry, rows),
        layer_name=i18n.DEVICES,
        colour_field="status",
        colours=status.COLOURS,
        mappings=[status.mapping(ctx)],
        description=STATUS_MAP(ctx.lang),
        width=12,
    )
    value_map = panels.device_map(
        ctx,
        Text("Peta nilai terkini", "Latest value map"),
        flux.device_status(telemetry, rows),
        layer_name=i18n.DEVICES,
        colour_field="category",
        colours=None,
        mappings=[category_mapping(ctx, rows)],
        description=VALUE_MAP(ctx.lang),
        width=12,
    )
    board = (
        board.with_panel(status_map)
        .with_panel(value_map)
        .with_panel(
            status.table(
                ctx,
                SILENT,
                flux.device_status(telemetry, rows, only_silent=True),
                size=(12, 10),
                columns=flux.SILENT_COLUMNS,
                when_empty=Text("Semua perangkat melapor", "Every device is reporting"),
            )
        )
        .with_panel(
            panels.data_table(
                ctx,
                FIRING_TITLE,
                flux.alerts_latest(*alerts, firing_only=True),
                renames=ALERT_COLUMNS,
                when_empty=NO_ALERTS,
                width=12,
                height=10,
            )
        )
        .with_panel(
            status.table(
                ctx,
                Text("Nilai terakhir semua perangkat", "Latest value of every device"),
                flux.device_status(telemetry, rows),
                size=(24, 12),
            )
        )
    )
    return [panels.finish(board)]


def category_mapping(ctx: BuildContext, rows: Sequence[RegistryRow]) -> dm.ValueMap:
    """Each band name the map can show, in its band's colour (ISPU, BMKG, river levels...)."""
    colours: dict[str, str] = {"-": "#8e8e8e"}
    for row in rows:
        colours.update(zip(row.categories, row.colours, strict=True))
    return panels.value_text(
        {name: (Text(name, name), colour) for name, colour in colours.items()}, ctx
    )
