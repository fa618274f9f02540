"""What the stages run on, not what they do: the consume-process-write-commit loop, Kafka
clients and output, the InfluxDB sink and its retry policy, line protocol, reading consumed
records, health counters and the process runner. Stages live one level up."""
