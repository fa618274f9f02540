"""Device status codes of :func:`deploy.grafana.flux.device_status` and how they are shown."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana import i18n
from deploy.grafana.bands import Band, Bands
from deploy.grafana.context import BuildContext
from deploy.grafana.panels import value_text

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
