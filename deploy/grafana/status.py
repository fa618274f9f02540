"""Device status codes of :func:`deploy.grafana.flux.device_status` and how they are shown."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType

from grafana_foundation_sdk.builders import table as tb
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.units import DurationSeconds

from deploy.grafana import i18n
from deploy.grafana.bands import Band, Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.i18n import Text
from deploy.grafana.panels import data_table, value_text

REPORTING, SILENT, NEVER = 0, 1, 2

COLOURS = Bands(
    (
        Band(None, "green", i18n.STATUS_OK),
        Band(SILENT, "red", i18n.STATUS_SILENT),
        Band(NEVER, "#8e8e8e", i18n.STATUS_NEVER),
    ),
    i18n.STATUS,
)


def mapping(ctx: BuildContext) -> dm.ValueMap:
    return value_text({str(int(b.start or 0)): (b.label, b.colour) for b in COLOURS.bands}, ctx)


COLUMNS = MappingProxyType(
    {
        "name": i18n.NAME,
        "device": i18n.DEVICE,
        "type": i18n.TYPE,
        "kecamatan": i18n.KECAMATAN,
        "metric": i18n.METRIC,
        "value": i18n.VALUE,
        "unit": i18n.UNIT,
        "last_seen": i18n.LAST_SEEN,
        "age_s": i18n.AGE,
        "status": i18n.STATUS,
    }
)
"""Column labels of :func:`deploy.grafana.flux.device_status` tables."""


def table(
    ctx: BuildContext,
    title: Text,
    query: str,
    *,
    size: tuple[int, int],
    columns: Collection[str] = tuple(COLUMNS),
    when_empty: Text | None = None,
    more: Mapping[str, Text] | None = None,
) -> tb.Panel:
    """A device-status table: labelled columns (``more``: labels of further columns),
    status as text and colour, age as duration."""
    renames = {k: v for k, v in COLUMNS.items() if k in columns} | dict(more or {})
    return data_table(
        ctx,
        title,
        query,
        renames=renames,
        mappings=[mapping(ctx)],
        width=size[0],
        height=size[1],
        when_empty=when_empty,
    ).override_by_name("age_s", [dm.DynamicConfigValue("unit", DurationSeconds)])
