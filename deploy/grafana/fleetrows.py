"""The registry's enabled devices as :class:`~deploy.grafana.flux.RegistryRow` for queries:
position, names, headline metric with its bands (for the map's category), silence limit."""

from __future__ import annotations

from collections.abc import Collection

from deploy.grafana import bands
from deploy.grafana.bands import Band
from deploy.grafana.context import BuildContext
from deploy.grafana.domains import headline
from deploy.grafana.flux import RegistryRow
from deploy.grafana.i18n import Text

NO_BANDS = Band(None, "#8e8e8e", Text("-", "-"))
"""A headline metric without bands: every value is in one grey category."""


def registry_rows(ctx: BuildContext, types: Collection[str] | None = None) -> list[RegistryRow]:
    catalogue = ctx.fleet.catalogue
    rows = []
    for device in ctx.fleet.registry:
        if not device.enabled or (types is not None and device.type not in types):
            continue
        device_type = catalogue.types[device.type]
        metric = headline(device_type)
        found = bands.for_value(ctx.rules, metric, [device.type], device.id)
        judged = found.bands if found is not None else (NO_BANDS,)
        rows.append(
            RegistryRow(
                device=device.id,
                name=device.name,
                type=device.type,
                kecamatan=device.kecamatan,
                latitude=device.latitude,
                longitude=device.longitude,
                metric=metric,
                unit=device_type.metrics[metric].unit,
                silent_after_s=ctx.silent_after_s(device.id),
                steps=tuple(float(band.start) for band in judged[1:] if band.start is not None),
                categories=tuple(band.label(ctx.lang) for band in judged),
                colours=tuple(band.colour for band in judged),
            )
        )
    return rows
