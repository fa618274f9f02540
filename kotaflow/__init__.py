"""kotaflow: event-driven IoT sensor ingestion for smart cities.

This package holds what every stage shares: settings, the command line and logging.
The data flow itself lives in the top-level packages ``devices`` (what devices send),
``ingest`` (MQTT -> Kafka), ``processors`` (Kafka -> InfluxDB, alerts) and ``deploy``.
"""

__version__ = "0.1.0"
