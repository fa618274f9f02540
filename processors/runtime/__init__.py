"""What the stages run on, not what they do: the consume-process-write-commit loop, Kafka
clients and output, the InfluxDB sink and its retry policy, line protocol, reading consumed
records and health counters. The stages, and the runner that composes them into a
``kotaflow process``, live one level up."""
