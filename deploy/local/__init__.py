"""The local stack: installs and runs Mosquitto, Kafka and InfluxDB on loopback, no Docker."""
