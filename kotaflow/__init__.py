"""kotaflow: event-driven IoT sensor ingestion for smart cities.

This package is the foundation every part shares: settings, the wire contracts of the Kafka
topics (:mod:`kotaflow.wire`), how clients reach MQTT and Kafka, logging. It imports none
of the parts. The roof above them is the command line (:mod:`kotaflow.cli`, which registers
every part's commands) and the two commands that compose all parts, ``kotaflow status``
(:mod:`kotaflow.status`) and ``kotaflow run`` (:mod:`kotaflow.run`); nothing else here
imports a part, not even inside a function (``tests/kotaflow/test_foundation.py``).
The data flow itself lives in the top-level packages ``devices`` (what devices send),
``ingest`` (MQTT -> Kafka), ``processors`` (Kafka -> InfluxDB, alerts) and ``deploy``.
"""
