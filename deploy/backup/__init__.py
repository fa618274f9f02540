"""``kotaflow backup DIR`` / ``kotaflow restore DIR``: everything a stack cannot rebuild.

What a backup holds (:mod:`deploy.backup.contents`): the whole InfluxDB server through its
HTTP backup API (:mod:`deploy.backup.influx`), the alerting state (SQLite online backup), the
credentials kept in the state directory (Mosquitto passwd/ACL/accounts, InfluxDB tokens,
Kafka SCRAM password, the TLS CA) and the settings, registry, catalogue and rules files in
use. Kafka's topics are a buffer, not a record, and Grafana is provisioned from code, so
neither is in it. :mod:`deploy.backup.manifest` lists every file with its size and SHA-256;
restore verifies them all before it touches anything.
"""
