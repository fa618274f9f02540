"""The InfluxDB (Flux) panel query as a grafana-foundation-sdk data query.

The SDK ships query models for many data sources but not InfluxDB, so this adds one the
way its own are made: a :class:`~grafana_foundation_sdk.cog.variants.Dataquery` with
``to_json`` / ``from_json`` and a builder. :func:`register` tells the SDK's decoder about
it, so ``Dashboard.from_json`` gives back :class:`FluxQuery` objects rather than untyped
dictionaries (the round-trip test relies on it).
"""

from __future__ import annotations

from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

INFLUXDB = "influxdb"
"""Grafana's plugin id of the InfluxDB data source."""


class FluxQuery(cogvariants.Dataquery):
    """``{"refId", "query", "datasource", "hide"}``: what Grafana stores for a Flux query."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        datasource: DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query}
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        datasource = data.get("datasource")
        return cls(
            ref_id=data.get("refId", "A"),
            query=data.get("query", ""),
            datasource=DataSourceRef.from_json(datasource) if datasource is not None else None,
            hide=data.get("hide"),
        )


class Flux(cogbuilder.Builder[FluxQuery]):
    """Builder: ``Flux(query).ref_id("B").datasource(ref)``."""

    def __init__(self, query: str) -> None:
        self._internal = FluxQuery(query=query)

    def build(self) -> FluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self


def register() -> None:
    """Make the SDK decode ``influxdb`` targets as :class:`FluxQuery` (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=INFLUXDB, from_json_hook=FluxQuery.from_json)
    )


def datasource_ref(uid: str) -> DataSourceRef:
    return DataSourceRef(type_val=INFLUXDB, uid=uid)
