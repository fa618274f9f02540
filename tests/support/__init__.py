"""Harness shared by the tests and the benchmarks (not shipped): isolated Kafka topics and
groups on the shared local stack, and an isolated end-to-end alerting pipeline."""
