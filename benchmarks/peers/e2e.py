"""Comparison 3: end to end at a steady rate, kotaflow vs Telegraf (MQTT -> Kafka -> InfluxDB).

Both run inside :func:`benchmarks.e2e_bench.measure` (the same simulated devices, native
JSON, the same isolation and the same latency rule: device time -> first poll that finds
the reading in InfluxDB), with a different pipeline:

- kotaflow: ``kotaflow bridge`` + ``kotaflow process`` (every stage);
- Telegraf: two processes, as Telegraf is deployed for this: ``mqtt_consumer`` (persistent
  QoS 1 session, the run's devices only) -> ``outputs.kafka`` (line protocol, acks=all),
  and ``kafka_consumer`` -> ``influxdb_v2`` raw + ``basicstats`` 60 s -> ``influxdb_v2``
  rollups (:mod:`benchmarks.peers.telegraf`).

CPU per 1,000 readings counts every pipeline process from the simulator's start until the
last reading was queryable (start-up and warm-up left out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.children import Child, ready_or_stopped
from benchmarks.e2e_bench import E2ERun, Pipeline, kotaflow_pipeline, measure
from benchmarks.peers.mqtt_kafka import telegraf_secrets, telegraf_source
from benchmarks.peers.telegraf import (
    InfluxSink,
    kafka_to_influx_config,
    mqtt_parse_config,
    spawn_telegraf,
)
from benchmarks.report import Latency
from kotaflow.settings import Settings

PEERS = ("kotaflow", "telegraf")
NATIVE_TOPICS = ("kotaflow/+/telemetry",)
"""Telegraf parses one payload format: the run's devices publish native JSON only."""


def telegraf_pipeline(binary: Path) -> Pipeline:
    """Telegraf's two processes for one run of :func:`benchmarks.e2e_bench.measure`."""

    async def start(settings: Settings, _env: dict[str, str], work: Path) -> list[Child]:
        topics, influx = settings.kafka.topics, settings.influxdb
        client_id = settings.bridge.client_id  # the run's session: measure() wipes it
        device_glob = f"b{client_id.rsplit('-', 1)[-1]}-*"  # the run's device ids
        source = telegraf_source(settings, client_id, NATIVE_TOPICS)
        brokers = settings.kafka.bootstrap_servers
        secrets = telegraf_secrets(settings)
        sink = InfluxSink(influx.url, influx.org, influx.telemetry_bucket, influx.rollups_bucket)
        group = f"{settings.processing.store.group_id}-telegraf"
        edge = spawn_telegraf(
            binary,
            "telegraf mqtt-kafka",
            mqtt_parse_config(source, brokers, topics.raw, device_glob=device_glob),
            work,
            secrets,
        )
        writer = spawn_telegraf(
            binary,
            "telegraf kafka-influxdb",
            kafka_to_influx_config(brokers, topics.raw, group, sink, line_protocol=True),
            work,
            secrets,
        )
        return await asyncio.to_thread(ready_or_stopped, [edge, writer], edge, "Connected [")

    return start


@dataclass(frozen=True, slots=True)
class E2EFigures:
    rate: float
    achieved_rate: float
    """What the simulator managed to offer (it shares the 2 cores too)."""
    latency: Latency | None
    cpu_per_1000_s: float
    stored_pct: float


async def run_one(
    settings: Settings, peer: str, telegraf: Path, rate: float, duration_s: float
) -> E2EFigures:
    pipeline = kotaflow_pipeline if peer == "kotaflow" else telegraf_pipeline(telegraf)
    run = await measure(settings, rate, duration_s, pipeline=pipeline, payload_format="native")
    return summarise(run)


def summarise(run: E2ERun) -> E2EFigures:
    cpu = sum(run.run_cpu_s.values())
    return E2EFigures(
        run.rate,
        float(run.summary.get("achieved_rate", 0.0)),
        Latency.of("device time -> queryable", run.latencies_ms),
        1000 * cpu / run.expected if run.expected else 0.0,
        100 * run.stored / run.expected if run.expected else 0.0,
    )


def figures(f: E2EFigures) -> dict[str, float | None]:
    lat = f.latency
    return {
        "p50 publish -> queryable": lat.p50_ms if lat else None,
        "p99 publish -> queryable": lat.p99_ms if lat else None,
        "CPU per 1,000 readings": f.cpu_per_1000_s,
        "readings stored / sent": f.stored_pct,
        "offered by the simulator": f.achieved_rate,
    }


def rates(quick: bool) -> Sequence[float]:
    return (2_000.0, 100.0) if quick else (2_000.0, 100.0, 10_000.0)
