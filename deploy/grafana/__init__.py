"""Grafana for kotaflow, as code: dashboards, data source and alert rules, rendered or synced.

Everything an operator sees in Grafana is generated here from the device catalogue, the
registry, the alert rules and the settings, so it cannot drift from the pipeline:

* :mod:`.dashboards` - one module per dashboard (city overview, one per domain, device
  drill-down, pipeline health), built with grafana-foundation-sdk, in Bahasa Indonesia and
  English (:mod:`.i18n`);
* :mod:`.flux` - the Flux queries the panels run, as plain functions (tested against the
  real InfluxDB); :mod:`.bands` - ISPU, BMKG and river threshold bands;
* :mod:`.alerting` - Grafana alert rules mirroring ``processors/alerting`` rules, contact
  points and notification policies;
* :mod:`.provisioning` - ``kotaflow grafana render DIR``: Grafana's provisioning files;
* :mod:`.sync` - ``kotaflow grafana sync``: the same objects pushed through the HTTP API.

Nothing here talks to InfluxDB; only :mod:`.sync` talks to Grafana.
"""
