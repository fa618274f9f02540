"""InfluxDB setup shared by the local stack, compose and the VM guide (``kotaflow influxdb``)."""
