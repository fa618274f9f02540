"""The registry's enabled devices as :class:`~deploy.grafana.flux.RegistryRow` for queries."""

from __future__ import annotations

from collections.abc import Collection

from deploy.grafana.context import BuildContext
from deploy.grafana.domains import headline
from deploy.grafana.flux import RegistryRow


def registry_rows(ctx: BuildContext, types: Collection[str] | None = None) -> list[RegistryRow]:
    catalogue = ctx.fleet.catalogue
    rows = []
    for device in ctx.fleet.registry:
        if not device.enabled or (types is not None and device.type not in types):
            continue
        device_type = catalogue.types[device.type]
        metric = headline(device_type)
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
            )
        )
    return rows
