"""Telegraf as a peer: its build (cached), its configurations, and running it.

Telegraf v1.37.2 is built once from the Go module proxy with only the plugins these
configurations use (``build_telegraf.sh``, about 4 min on 2 cores, cached under
``<cache>/telegraf/<version>/``). Each configuration is at-least-once, the way Telegraf
does it: inputs hand out tracking metrics and ack their source (the MQTT PUBACK, the Kafka
offset commit) only after every output wrote the metric; ``max_undelivered_messages``
bounds what is in flight. Secrets are not written into the files: Telegraf reads
``${KF_MQTT_PASSWORD}`` and ``${KF_INFLUX_TOKEN}`` from its environment.

The configurations are rendered by pure functions (unit-tested) and written beside the
results, so what was compared is on record.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.children import Child
from deploy.local.installers import run_logged
from deploy.local.service import Report, ServiceError

TELEGRAF_VERSION = "v1.37.2"
BUILD_SCRIPT = Path(__file__).with_name("build_telegraf.sh")
RAW_MEASUREMENT = "reading"
ROLLUP_MEASUREMENT = "reading_1m"

AGENT_BATCH = 5_000
"""``metric_batch_size``: InfluxData's advice for InfluxDB writes (~5,000 lines a batch)."""
AGENT_BUFFER = 100_000
FLUSH_INTERVAL = "100ms"
"""Telegraf flushes a full batch at once and the rest every ``flush_interval`` (default
10 s): 100 ms keeps its publish -> queryable latency comparable with kotaflow's."""
MAX_UNDELIVERED = 10_000
"""Tracking metrics in flight per input (two batches): more would not be acked faster."""


def telegraf_dir(cache_dir: Path, version: str = TELEGRAF_VERSION) -> Path:
    return cache_dir / "telegraf" / version


def cached_telegraf(cache_dir: Path, version: str = TELEGRAF_VERSION) -> Path | None:
    """The cached binary, or None when it is not built yet."""
    binary = telegraf_dir(cache_dir, version) / "telegraf"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def ensure_telegraf(cache_dir: Path, report: Report, version: str = TELEGRAF_VERSION) -> Path:
    """The cached ``telegraf`` binary, built from the Go module proxy if it is not there yet
    (``build_telegraf.sh`` holds a lock, so parallel callers wait for one build)."""
    found = cached_telegraf(cache_dir, version)
    if found is not None:
        return found
    target = telegraf_dir(cache_dir, version)
    report(f"telegraf: building {version} from the Go module proxy (once, ~4 min on 2 cores)")
    run_logged(
        ["bash", str(BUILD_SCRIPT), "--version", version, "--out", str(target)],
        target / "build.log",
        report,
        what="telegraf build",
        progress=lambda line: f"telegraf: {line[4:]}" if line.startswith("==> ") else None,
    )
    found = cached_telegraf(cache_dir, version)
    if found is None:
        raise ServiceError(f"telegraf: the build finished but {target / 'telegraf'} is missing")
    return found


def _q(text: str) -> str:
    """A TOML basic string (JSON's escaping is TOML's for these)."""
    return json.dumps(text)


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def _agent(batch: int = AGENT_BATCH) -> str:
    return f"""[agent]
  interval = "10s"
  round_interval = false
  metric_batch_size = {batch}
  metric_buffer_limit = {AGENT_BUFFER}
  flush_interval = {_q(FLUSH_INTERVAL)}
  flush_jitter = "0s"
  omit_hostname = true
  quiet = false
  skip_processors_after_aggregators = true
"""


@dataclass(frozen=True, slots=True)
class MqttSource:
    """Where Telegraf's ``mqtt_consumer`` reads: a persistent QoS 1 session (MQTT 3.1.1,
    the only version the plugin speaks), logged in as the bridge account."""

    url: str
    """``tcp://host:port`` (or ``ssl://``)."""
    username: str | None
    client_id: str
    topics: tuple[str, ...]


def _mqtt_input(source: MqttSource, data_format: str, device_glob: str | None = None) -> str:
    login = ""
    if source.username is not None:
        login = f'  username = {_q(source.username)}\n  password = "${{KF_MQTT_PASSWORD}}"\n'
    return f"""[[inputs.mqtt_consumer]]
  servers = [{_q(source.url)}]
  topics = {_list(source.topics)}
  qos = 1
  persistent_session = true
  client_id = {_q(source.client_id)}
  max_undelivered_messages = {MAX_UNDELIVERED}
  topic_tag = ""
{login}{data_format}
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "kotaflow/+/+"
    tags = "_/device/_"
{_tagpass(device_glob)}"""


def _tagpass(device_glob: str | None) -> str:
    if device_glob is None:
        return ""
    return f"  [inputs.mqtt_consumer.tagpass]\n    device = [{_q(device_glob)}]\n"


def _kafka_output(brokers: str, topic: str, data_format: str) -> str:
    return f"""[[outputs.kafka]]
  brokers = {_list(brokers.split(","))}
  topic = {_q(topic)}
  version = "3.0.0"
  routing_tag = "device"
  required_acks = -1
  idempotent_writes = true
  max_retry = 1000000
  compression_codec = 4
{data_format}"""


def mqtt_forward_config(source: MqttSource, brokers: str, topic: str) -> str:
    """MQTT -> Kafka, the bridge's job: each payload byte for byte to ``topic``, keyed by the
    device id from the topic (``kotaflow/<device>/...``); acks=all, idempotent, zstd.

    The payload is kept as one string field (the ``value`` parser) and written back
    unchanged by the ``template`` serializer."""
    return (
        _agent(batch=1_000)
        + "\n"
        + _mqtt_input(source, '  data_format = "value"\n  data_type = "string"')
        + "\n"
        + _kafka_output(
            brokers,
            topic,
            '  data_format = "template"\n  template = \'{{ .Field "value" }}\'\n',
        )
    )


def _native_json(plugin: str) -> str:
    """json_v2 for kotaflow's native payload, one object ``{"ts": ms, "values": {...}}``
    or an array of them: one metric per object, a float field per metric."""
    return f"""  data_format = "json_v2"
  [[inputs.{plugin}.json_v2]]
    measurement_name = {_q(RAW_MEASUREMENT)}
    [[inputs.{plugin}.json_v2.object]]
      path = "@this"
      timestamp_key = "ts"
      timestamp_format = "unix_ms"
      disable_prepend_keys = true
"""


def mqtt_parse_config(
    source: MqttSource, brokers: str, topic: str, device_glob: str | None = None
) -> str:
    """MQTT -> Kafka as the first leg of Telegraf's pipeline: native JSON parsed at the edge
    (device id from the topic) and written to ``topic`` as line protocol, keyed by device.
    ``device_glob``: keep only devices matching it (others on a shared broker are dropped,
    as kotaflow's validate dead-letters devices not in its registry)."""
    return (
        _agent()
        + "\n"
        + _mqtt_input(source, _native_json("mqtt_consumer"), device_glob)
        + "\n"
        + _kafka_output(brokers, topic, '  data_format = "influx"\n')
    )


@dataclass(frozen=True, slots=True)
class InfluxSink:
    url: str
    org: str
    raw_bucket: str
    rollup_bucket: str


def kafka_to_influx_config(
    brokers: str,
    topic: str,
    group: str,
    sink: InfluxSink,
    *,
    line_protocol: bool,
    grace: str = "2h",
) -> str:
    """Kafka -> raw points + 1-minute rollups in InfluxDB.

    ``line_protocol``: the records are what :func:`mqtt_parse_config` wrote (tag
    ``device``); else kotaflow's raw envelopes (native JSON, device id in header
    ``kf.device``, which becomes the tag ``kf.device``). Offsets are committed only after
    both outputs wrote (tracking metrics). ``basicstats`` sums each wall-clock ``period``
    of 60 s (Telegraf has no event-time windows); ``grace`` lets it take readings whose
    time lies before the period, so it aggregates every reading of a backlog, as the
    other peers do."""
    if line_protocol:
        data_format = '  data_format = "influx"\n'
        headers = ""
    else:
        data_format = _native_json("kafka_consumer")
        headers = '  msg_headers_as_tags = ["kf.device"]\n'
    influx = f"""  urls = [{_q(sink.url)}]
  token = "${{KF_INFLUX_TOKEN}}"
  organization = {_q(sink.org)}
  content_encoding = "gzip"
"""
    return f"""{_agent()}
[[inputs.kafka_consumer]]
  brokers = {_list(brokers.split(","))}
  topics = [{_q(topic)}]
  consumer_group = {_q(group)}
  offset = "oldest"
  kafka_version = "3.0.0"
  max_undelivered_messages = {MAX_UNDELIVERED}
  max_processing_time = "1s"
{headers}{data_format}
[[aggregators.basicstats]]
  period = "60s"
  grace = {_q(grace)}
  drop_original = false
  stats = ["count", "min", "max", "mean", "sum"]
  name_override = {_q(ROLLUP_MEASUREMENT)}

[[outputs.influxdb_v2]]
  namepass = [{_q(RAW_MEASUREMENT)}]
  bucket = {_q(sink.raw_bucket)}
{influx}
[[outputs.influxdb_v2]]
  namepass = [{_q(ROLLUP_MEASUREMENT)}]
  bucket = {_q(sink.rollup_bucket)}
{influx}"""


def spawn_telegraf(
    binary: Path, name: str, config_text: str, work: Path, secrets: dict[str, str]
) -> Child:
    """Write ``config_text`` to ``work/<name>.conf`` and start Telegraf on it; its log goes
    to ``work/<name>.log``. ``secrets`` (``KF_*``) reach it through the environment only."""
    slug = name.replace(" ", "-")
    config = work / f"{slug}.conf"
    config.write_text(config_text, encoding="utf-8")
    log = work / f"{slug}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "--strict-env-handling", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **secrets},
        )
    return Child(name, proc, log)
