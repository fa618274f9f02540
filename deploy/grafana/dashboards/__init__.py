"""Every kotaflow dashboard, one module each, registered here one line per dashboard.

A builder takes a :class:`~deploy.grafana.context.BuildContext` (which carries the language)
and returns finished dashboard models; the domain module returns one per domain.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy.grafana.context import BuildContext
from deploy.grafana.dashboards import device, domain, overview, pipeline

Builder = Callable[[BuildContext], list[Dashboard]]

BUILDERS: tuple[Builder, ...] = (
    overview.build,
    domain.build,
    device.build,
    pipeline.build,
)


def build_all(ctx: BuildContext) -> list[Dashboard]:
    """All dashboards in ``ctx.lang``, in a stable order."""
    return [board for build in BUILDERS for board in build(ctx)]
