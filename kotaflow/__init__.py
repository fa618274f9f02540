"""kotaflow: event-driven IoT sensor ingestion for smart cities.

This package is the foundation every part shares: settings, the wire contracts of the Kafka
topics (:mod:`kotaflow.wire`), how clients reach MQTT and Kafka, logging. It imports none
of the parts; the command line (:mod:`kotaflow.cli`) is the one roof that registers them.
The data flow itself lives in the top-level packages ``devices`` (what devices send),
``ingest`` (MQTT -> Kafka), ``processors`` (Kafka -> InfluxDB, alerts) and ``deploy``.
"""
