"""One setting decides every size limit on a message's way (ingest/sizes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.mosquitto import Mosquitto
from ingest.sizes import KAFKA_DEFAULT_MESSAGE_BYTES, SizeLimitError, SizeLimits, check_topic_sizes
from kotaflow.settings import BridgeSettings, Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason


def test_the_limits_follow_from_the_payload_setting() -> None:
    small = SizeLimits.of(BridgeSettings(max_payload_bytes=1_000))
    big = SizeLimits.of(BridgeSettings(max_payload_bytes=4_000_000))
    assert small.payload_bytes == 1_000
    assert small.record_bytes > 1_000 * 4 // 3  # a dead letter of the largest payload fits
    assert small.request_bytes >= BridgeSettings().max_batch_bytes  # a full batch fits
    assert big.record_bytes > 4_000_000 * 4 // 3
    assert big.request_bytes > big.record_bytes
    assert big.topic_message_bytes == big.request_bytes
    assert small.topic_message_bytes == KAFKA_DEFAULT_MESSAGE_BYTES  # never below the default


def test_the_largest_dead_letter_fits_the_record_limit() -> None:
    limits = SizeLimits.of(BridgeSettings())
    dead = DeadLetter(
        stage="bridge",
        reason=Reason.UNKNOWN_TOPIC,
        message="topic matches no device pattern",
        payload=b"\xff" * limits.payload_bytes,
        device="d" * 64,
        source={"mqtt_topic": "kotaflow/" + "t" * 200 + "/telemetry", "qos": 1, "retain": False},
    )
    assert len(dead.value()) < limits.record_bytes


def test_topics_that_take_less_are_refused_naming_the_values() -> None:
    limits = SizeLimits.of(BridgeSettings())
    check_topic_sizes(limits, {"raw": limits.request_bytes, "dead": 10 * limits.request_bytes})
    with pytest.raises(SizeLimitError) as err:
        check_topic_sizes(limits, {"raw": limits.request_bytes, "dead": 50_000})
    text = str(err.value)
    assert "dead max.message.bytes=50000" in text
    assert f"needs {limits.request_bytes}" in text
    assert "bridge.max_payload_bytes=65536" in text
    assert "raw max.message.bytes" not in text


def test_the_brokers_limit_is_rendered_from_the_setting(tmp_path: Path) -> None:
    settings = Settings(
        bridge={"max_payload_bytes": 12_345},  # type: ignore[arg-type]
        stack={"state_dir": tmp_path / "state", "cache_dir": tmp_path / "cache"},  # type: ignore[arg-type]
    )
    text = Mosquitto(settings)._config_text()
    assert "\nmessage_size_limit 12345\n" in text
    assert "\nmax_packet_size" not in text  # it disconnects the client: see the template


def test_the_production_broker_uses_the_default_limit() -> None:
    conf = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
    lines = [
        line for line in conf.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    ]
    assert f"message_size_limit {BridgeSettings().max_payload_bytes}" in lines
