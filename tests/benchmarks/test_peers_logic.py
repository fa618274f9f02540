"""``kotaflow bench peers``: its pure logic, without services (no timing asserted).

Telegraf configurations (rendered TOML, read back with ``tomllib``), event-time window
judging, the drain's steady span, backlog progress, and the tables' medians and ratios.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from benchmarks.peers.backlog import queryable_messages, schedule_of
from benchmarks.peers.drain import steady_span
from benchmarks.peers.table import KOTAFLOW, Comparison, Row, ratios
from benchmarks.peers.telegraf import (
    ROLLUP_MEASUREMENT,
    InfluxSink,
    MqttSource,
    kafka_to_influx_config,
    mqtt_forward_config,
    mqtt_parse_config,
)
from benchmarks.peers.windows import (
    backlog_readings,
    complete_windows,
    expected_windows,
    found_windows,
)

SOURCE = MqttSource("tcp://127.0.0.1:1883", "kotaflow-bridge", "bench-telegraf-1", ("a/+/b",))
SINK = InfluxSink("http://127.0.0.1:8086", "kotaflow", "raw", "rollups")


def _toml(text: str) -> dict[str, Any]:
    return tomllib.loads(text)


def test_mqtt_forward_config_is_at_least_once_and_forwards_bytes() -> None:
    conf = _toml(mqtt_forward_config(SOURCE, "k1:9092,k2:9092", "bench.x.telegraf"))
    mqtt = conf["inputs"]["mqtt_consumer"][0]
    assert mqtt["qos"] == 1
    assert mqtt["persistent_session"] is True
    assert mqtt["client_id"] == "bench-telegraf-1"
    assert mqtt["password"] == "${KF_MQTT_PASSWORD}"  # from the environment, not the file
    assert (mqtt["data_format"], mqtt["data_type"]) == ("value", "string")
    kafka = conf["outputs"]["kafka"][0]
    assert kafka["brokers"] == ["k1:9092", "k2:9092"]
    assert kafka["required_acks"] == -1
    assert kafka["idempotent_writes"] is True
    assert kafka["routing_tag"] == "device"
    assert kafka["template"] == '{{ .Field "value" }}'


def test_mqtt_parse_config_keeps_only_the_runs_devices() -> None:
    conf = _toml(mqtt_parse_config(SOURCE, "k:9092", "t", device_glob="babc123-*"))
    mqtt = conf["inputs"]["mqtt_consumer"][0]
    assert mqtt["tagpass"] == {"device": ["babc123-*"]}
    assert mqtt["topic_parsing"][0]["tags"] == "_/device/_"
    assert mqtt["json_v2"][0]["object"][0]["timestamp_key"] == "ts"
    assert conf["outputs"]["kafka"][0]["data_format"] == "influx"


def test_mqtt_config_without_login_has_no_password() -> None:
    anonymous = MqttSource("tcp://h:1", None, "c", ("t",))
    assert (
        "password"
        not in _toml(mqtt_forward_config(anonymous, "k:9092", "t"))["inputs"]["mqtt_consumer"][0]
    )


@pytest.mark.parametrize("line_protocol", [True, False])
def test_kafka_to_influx_config_splits_raw_and_rollups(line_protocol: bool) -> None:
    conf = _toml(
        kafka_to_influx_config("k:9092", "topic", "group", SINK, line_protocol=line_protocol)
    )
    consumer = conf["inputs"]["kafka_consumer"][0]
    assert (consumer["consumer_group"], consumer["offset"]) == ("group", "oldest")
    assert consumer["data_format"] == ("influx" if line_protocol else "json_v2")
    assert ("msg_headers_as_tags" in consumer) is not line_protocol
    stats = conf["aggregators"]["basicstats"][0]
    assert (stats["period"], stats["name_override"]) == ("60s", ROLLUP_MEASUREMENT)
    outputs = {o["bucket"]: o for o in conf["outputs"]["influxdb_v2"]}
    assert outputs["raw"]["namepass"] == ["reading"]
    assert outputs["rollups"]["namepass"] == [ROLLUP_MEASUREMENT]
    assert all(o["token"] == "${KF_INFLUX_TOKEN}" for o in outputs.values())


def _payload(ts: int, **values: float) -> bytes:
    return json.dumps({"ts": ts, "values": values}).encode()


def test_expected_windows_count_readings_per_device_metric_minute() -> None:
    records = [
        ("d1", _payload(60_000, t=1.0, rh=2.0)),
        ("d1", _payload(119_999, t=1.5)),
        ("d1", _payload(120_000, t=2.0)),
        ("d2", json.dumps([{"ts": 60_500, "values": {"t": 3.0}}]).encode()),
    ]
    expected = expected_windows(backlog_readings(records))
    assert expected == {
        ("d1", "t", 60_000): 2,
        ("d1", "rh", 60_000): 1,
        ("d1", "t", 120_000): 1,
        ("d2", "t", 60_000): 1,
    }


def test_kotaflow_and_telegraf_rollup_rows_are_read_alike() -> None:
    rows = [
        {
            "_time": "1970-01-01T00:01:00Z",
            "_field": "count",
            "_value": "2",
            "device": "d1",
            "metric": "t",
        },
        {"_time": "1970-01-01T00:01:00Z", "_field": "rh_count", "_value": "1", "kf.device": "d1"},
        {"_time": "1970-01-01T00:02:00Z", "_field": "t_count", "_value": "1.0", "device": "d1"},
    ]
    assert found_windows(rows) == {
        ("d1", "t", 60_000): 2,
        ("d1", "rh", 60_000): 1,
        ("d1", "t", 120_000): 1,
    }


def test_a_window_is_complete_only_at_its_start_with_every_reading() -> None:
    expected = {("d", "t", 60_000): 3, ("d", "t", 120_000): 2, ("d", "t", 180_000): 1}
    found = {
        ("d", "t", 60_000): 3,  # complete
        ("d", "t", 120_000): 1,  # a reading short
        ("d", "t", 181_234): 1,  # a wall-clock period, not the event-time minute
    }
    assert complete_windows(expected, found) == 1


def test_steady_span_starts_at_the_first_sample_past_the_threshold() -> None:
    samples = [(0.0, 0.0, 0.0), (1.0, 0.5, 0.05), (2.0, 1.0, 0.2), (4.0, 3.0, 1.0)]
    span = steady_span(samples, 0.1)
    assert (span.wall_s, span.cpu_s, span.share) == (2.0, 2.0, 0.8)


def test_steady_span_of_one_jump_is_empty() -> None:
    assert steady_span([(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)], 0.1).share == 0.0


def test_queryable_messages_follow_each_devices_newest_point() -> None:
    schedule = schedule_of([("a", 1_000), ("a", 2_000), ("a", 3_000), ("b", 1_500)])
    assert schedule == {"a": (1_000, 3), "b": (1_500, 1)}
    assert queryable_messages({}, schedule) == 0
    assert queryable_messages({"a": 2_000}, schedule) == 2
    assert queryable_messages({"a": 9_000, "b": 1_500}, schedule) == 4
    assert queryable_messages({"b": 500}, schedule) == 0  # older than the backlog


def test_ratios_are_per_round_and_skip_rounds_missing_a_side() -> None:
    assert ratios([2.0, None, 6.0], [1.0, 3.0, 2.0]) == [2.0, 3.0]


def test_comparison_medians_ratios_and_not_run_cells() -> None:
    table = Comparison("x", "title", (KOTAFLOW, "telegraf", "quix"), [Row("throughput", "msg/s")])
    for ours, theirs in ((100.0, 50.0), (300.0, 100.0), (120.0, 40.0)):
        table.add(KOTAFLOW, {"throughput": ours})
        table.add("telegraf", {"throughput": theirs})
        table.skip("quix", "not installed")
    table.rounds = 3
    assert table.medians()[KOTAFLOW]["throughput"] == 120.0
    assert table.ratio("telegraf", "throughput") == 3.0  # median of 2, 3, 3
    assert table.ratio("quix", "throughput") is None
    section = table.section()
    assert section["columns"] == [
        "figure",
        KOTAFLOW,
        "telegraf",
        "quix",
        "kotaflow / telegraf",
        "kotaflow / quix",
    ]
    assert section["rows"] == [
        ["throughput (msg/s)", "120 msg/s", "50.0 msg/s", "not run", "3.00x", ""]
    ]
    assert "quix not run: not installed" in section["notes"]
    assert section["data"]["not_run"] == {"quix": "not installed"}
