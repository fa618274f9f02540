"""What a dashboard or alert rule is generated from: fleet, alert rules, names, language.

:func:`load_context` reads everything once (catalogue, registry, alert rules, settings) and
the builders only look things up in the frozen :class:`BuildContext`, so generating is pure
and the same inputs always give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deploy.grafana.i18n import Lang
from devices.fleet import Fleet, load_fleet
from kotaflow.alerting_settings import AlertingSettings
from kotaflow.settings import GrafanaSettings, Settings
from processors.alerting.model import RuleKind, RuleSet
from processors.alerting.rules import load_rules, rules_file_of, with_device_levels

DATASOURCE_UID = "kotaflow-influxdb"
DATASOURCE_NAME = "kotaflow InfluxDB"
TIMEZONE = "Asia/Makassar"
"""WITA: Flores keeps central Indonesian time all year."""

SILENT_FLOOR_S = 900
"""Without a no-data rule, a device is silent after 3 intervals but never before 15 min."""


@dataclass(frozen=True, slots=True)
class InfluxNames:
    """Where the pipeline writes: org, buckets and measurements, from the settings."""

    org: str
    telemetry_bucket: str
    rollups_bucket: str
    alerts_bucket: str
    alerts_measurement: str
    health_bucket: str
    health_measurement: str

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxNames:
        influx = settings.influxdb
        alerting = alerting_settings(settings)
        health = settings.processing.health
        return cls(
            org=influx.org,
            telemetry_bucket=influx.telemetry_bucket,
            rollups_bucket=influx.rollups_bucket,
            alerts_bucket=alerting.influx_bucket or influx.telemetry_bucket,
            alerts_measurement=alerting.influx_measurement,
            health_bucket=health.bucket or influx.rollups_bucket,
            health_measurement=health.measurement,
        )


@dataclass(frozen=True, slots=True)
class BuildContext:
    lang: Lang
    fleet: Fleet
    rules: RuleSet
    influx: InfluxNames
    datasource_uid: str = DATASOURCE_UID
    timezone: str = TIMEZONE
    maps: GrafanaSettings = field(default_factory=GrafanaSettings)
    """Which tiles the map panels load (``grafana.map_tiles``), or none: tables instead."""

    def uid(self, name: str) -> str:
        """A dashboard's uid: ``kotaflow-<name>``, plus ``-en`` for the English variant."""
        return f"kotaflow-{name}{self.lang.uid_suffix}"

    def in_lang(self, lang: Lang) -> BuildContext:
        return replace(self, lang=lang)

    def silent_after_s(self, device_id: str) -> int:
        """Seconds without data after which the device counts as silent.

        The alert rules' no-data rule decides when one applies to the device (the map and
        the alerts then agree); otherwise three reporting intervals, at least 15 minutes.
        """
        device = self.fleet.registry.by_id[device_id]
        for rule in self.rules.rules:
            if rule.kind is RuleKind.NODATA and rule.scope.matches(
                device.id, device.type, device.kecamatan
            ):
                return max(1, rule.silent_ms // 1000)
        interval = self.fleet.catalogue.types[device.type].interval_s
        return max(3 * interval, SILENT_FLOOR_S)


def alerting_settings(settings: Settings) -> AlertingSettings:
    """The ``alerting:`` settings section: rule file, receivers, where events are written."""
    return settings.alerting


def load_context(settings: Settings, lang: Lang = Lang.ID) -> BuildContext:
    """Load catalogue, registry and alert rules named by ``settings`` (validated)."""
    fleet = load_fleet(settings)
    catalogue = fleet.catalogue
    rules = load_rules(
        rules_file_of(alerting_settings(settings)),
        metrics=set(catalogue.metrics),
        types=set(catalogue.types),
    )
    rules = with_device_levels(rules, fleet.registry)
    influx = InfluxNames.from_settings(settings)
    return BuildContext(lang, fleet, rules, influx, maps=settings.grafana)
