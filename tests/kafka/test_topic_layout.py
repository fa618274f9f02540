"""The topic layout: what ``kotaflow kafka topics create`` asks of the cluster, and how it
reads an existing topic that differs (pure, no Kafka)."""

from __future__ import annotations

import pytest

from deploy.local.kafka_topics import (
    Drift,
    planned_topics,
    replication_for,
    topic_configs,
    topic_drift,
)
from deploy.local.service import ServiceError
from kotaflow.settings import Settings, SettingsError, TopicLayout, load_settings


def test_defaults_are_todays_partitions() -> None:
    assert planned_topics(Settings().kafka) == {
        "kotaflow.raw": 6,
        "kotaflow.readings": 6,
        "kotaflow.deadletter": 3,
        "kotaflow.alerts": 3,
        "kotaflow.bridge-lease": 1,
    }


def test_partitions_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTAFLOW_KAFKA__LAYOUT__PARTITIONS__RAW", "12")
    assert planned_topics(load_settings().kafka)["kotaflow.raw"] == 12


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (3, (3, 2)), (5, (3, 2))])
def test_replication_follows_the_cluster_unless_set(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert replication_for(TopicLayout(), brokers) == expected


def test_explicit_replication_wins_and_must_fit_the_cluster() -> None:
    layout = TopicLayout(replication_factor=2, min_insync_replicas=2)
    assert replication_for(layout, 3) == (2, 2)
    with pytest.raises(ServiceError, match="asks for 2 replicas"):
        replication_for(layout, 1)


def test_min_isr_above_replication_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTAFLOW_KAFKA__LAYOUT__REPLICATION_FACTOR", "1")
    monkeypatch.setenv("KOTAFLOW_KAFKA__LAYOUT__MIN_INSYNC_REPLICAS", "2")
    with pytest.raises(SettingsError, match=r"kafka\.layout"):
        load_settings()


def test_configs_carry_isr_retention_and_the_size_only_when_set() -> None:
    assert topic_configs(TopicLayout(), 2) == {
        "min.insync.replicas": "2",
        "retention.ms": str(168 * 3_600_000),
    }
    sized = topic_configs(TopicLayout(retention_hours=1.5, max_message_bytes=2_000_000), 1)
    assert sized["retention.ms"] == "5400000"
    assert sized["max.message.bytes"] == "2000000"


def test_drift_names_each_difference() -> None:
    wanted = {"min.insync.replicas": "2", "retention.ms": "1000"}
    found = {"min.insync.replicas": "1", "retention.ms": "1000"}
    drift = topic_drift("t", (3, 1), found, (6, 3), wanted)
    assert drift == [
        Drift("t", "partition count", "3", "6"),
        Drift("t", "replication factor", "1", "3"),
        Drift("t", "min.insync.replicas", "1", "2"),
    ]
    assert str(drift[0]) == "kafka: topic t: partition count is 3, the layout says 6"
    assert topic_drift("t", (6, 3), wanted, (6, 3), wanted) == []
