"""The one Grafana data source: InfluxDB in Flux mode, read-only token from the environment.

Grafana reads with the ``grafana`` role's token (read access to the buckets, nothing else),
never the pipeline's. In provisioning files the token is ``${KOTAFLOW_GRAFANA_INFLUX_TOKEN}``
expanded by Grafana (or ``$__file{PATH}`` with ``render --influx-token-file``); ``grafana
sync`` sends the value (``--influx-token``, that variable, or the local stack's tokens file).
"""

from __future__ import annotations

from typing import Any

from deploy.grafana.context import DATASOURCE_NAME, DATASOURCE_UID
from deploy.grafana.envref import Secret
from deploy.grafana.query import INFLUXDB
from kotaflow.settings import Settings

TOKEN_ENV = "KOTAFLOW_GRAFANA_INFLUX_TOKEN"
MIN_INTERVAL_S = 10
MIN_INTERVAL = f"{MIN_INTERVAL_S}s"
"""Shortest ``v.windowPeriod`` Grafana picks: below the fastest devices' 60 s it is noise."""


def datasource(settings: Settings, token: Secret, url: str | None = None) -> dict[str, Any]:
    """The data source in the HTTP API's shape (``POST /api/datasources``)."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": INFLUXDB,
        "access": "proxy",
        "url": url or settings.influxdb.url,
        "isDefault": True,
        "jsonData": {
            "version": "Flux",
            "organization": settings.influxdb.org,
            "defaultBucket": settings.influxdb.telemetry_bucket,
            "httpMode": "POST",
            "timeInterval": MIN_INTERVAL,
        },
        "secureJsonData": {"token": token},
    }
