"""Store-and-forward gateways for kecamatan on weak links (``kotaflow edge``).

Where it sits in the flow: devices -> the gateway's local Mosquitto -> **edge** -> the
central Mosquitto -> ingest (the bridge) -> processors. Not to be confused with
``ingest/edge.py``, the bridge's per-message policy at its own MQTT edge.

* :mod:`edge.queue`    the durable queue file (SQLite, WAL, delete after central PUBACK)
* :mod:`edge.gateway`  the loop: local manual-ack intake, live-first forwarding
* :mod:`edge.metrics`  Prometheus metrics
* :mod:`edge.report`   the same metrics as readings of the registry's ``gateway`` device
* :mod:`edge.cli`      ``kotaflow edge`` and ``kotaflow edge status``
"""
