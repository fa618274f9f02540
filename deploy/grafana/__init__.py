"""Grafana for kotaflow, as code: dashboards, data source and alert rules, rendered or synced.

Everything an operator sees in Grafana is generated here from the device catalogue, the
registry, the alert rules and the settings, so it cannot drift from the pipeline:

* :mod:`.context` loads those once into a frozen build context; :mod:`.i18n` holds every
  text in Bahasa Indonesia and English;
* :mod:`.dashboards` - one module per dashboard (city overview, one per domain, device
  drill-down, pipeline health), built with grafana-foundation-sdk through the house style in
  :mod:`.panels`; :mod:`.domains`, :mod:`.metrics`, :mod:`.bands` (ISPU, BMKG, river
  levels, noise limits), :mod:`.status` and :mod:`.fleetrows` say what is drawn and how;
* :mod:`.flux` - every query as a plain function; :mod:`.query` - the Flux query model the
  SDK lacks;
* :mod:`.alerting` - Grafana alert rules mirroring ``processors/alerting``, contact points
  and the notification policy; :mod:`.datasource` - the InfluxDB data source;
* :mod:`.bundle` - all of the above generated once; :mod:`.provisioning` writes it as
  provisioning files (``kotaflow grafana render``), :mod:`.sync` pushes it through the HTTP
  API (``kotaflow grafana sync``); :mod:`.envref` keeps secrets out of both;
* :mod:`.interpolate` and :mod:`.querycheck` run every panel query the way Grafana would
  (``kotaflow grafana check`` and the tests), since Grafana does not run everywhere.

Only :mod:`.sync` talks to Grafana and only :mod:`.querycheck` (through the caller's
runner) to InfluxDB.
"""
