"""How the local stack is put together, checked without running anything."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import socket
from pathlib import Path

import pytest

import deploy.local
from deploy.local import stack as local_stack
from deploy.local.kafka import (
    BROKER_JAR,
    Kafka,
    MavenProgress,
    broker_address,
    new_cluster_id,
    pinned_version,
)
from deploy.local.kafka_topics import planned_topics
from deploy.local.mosquitto import Mosquitto
from deploy.local.service import START_MARKER, Paths, ServiceError, log_tail, note_config_drift
from kotaflow.settings import Settings
from tests.support.production_mosquitto import listener_blocks


def _settings(tmp_path: Path, **sections: object) -> Settings:
    return Settings(
        stack={"state_dir": tmp_path / "state", "cache_dir": tmp_path / "cache"},
        **sections,  # type: ignore[arg-type]
    )


def _service_classes() -> list[type]:
    """Every class in a ``deploy/local/*.py`` module that implements the Service protocol."""
    found = []
    for info in pkgutil.iter_modules(deploy.local.__path__):
        module = importlib.import_module(f"deploy.local.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            defined_here = cls.__module__ == module.__name__
            methods = all(hasattr(cls, m) for m in ("install", "start", "stop", "status"))
            if defined_here and methods and isinstance(getattr(cls, "name", None), str):
                found.append(cls)
    return found


def test_every_service_module_is_registered_in_build_services(tmp_path: Path) -> None:
    registered = {type(s) for s in local_stack.build_services(_settings(tmp_path))}
    classes = _service_classes()
    assert {Mosquitto, Kafka} <= set(classes)
    assert set(classes) <= registered, f"not in stack.build_services: {set(classes) - registered}"


def test_message_carriers_start_first(tmp_path: Path) -> None:
    names = [s.name for s in local_stack.build_services(_settings(tmp_path))]
    assert names[:2] == ["mosquitto", "kafka"]


def test_topic_plan_gives_the_busy_topics_more_partitions() -> None:
    plan = planned_topics(Settings().kafka)
    assert plan == {
        "kotaflow.raw": 6,
        "kotaflow.readings": 6,
        "kotaflow.deadletter": 3,
        "kotaflow.alerts": 3,
        "kotaflow.bridge-lease": 1,
    }


def test_topic_plan_follows_renamed_topics() -> None:
    settings = Settings(kafka={"topics": {"raw": "city.raw"}})  # type: ignore[arg-type]
    assert planned_topics(settings.kafka)["city.raw"] == 6


def test_pinned_kafka_version_is_a_4x_release() -> None:
    version = pinned_version()
    assert re.fullmatch(r"4\.\d+\.\d+", version)
    assert BROKER_JAR.fullmatch(f"kafka_2.13-{version}.jar")


def test_cluster_id_has_kafkas_shape() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) and not i.startswith("-") for i in ids)


def test_server_properties_put_broker_and_controller_on_the_configured_address(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, kafka={"bootstrap_servers": "127.0.0.1:19092"})
    assert broker_address(settings.kafka) == ("127.0.0.1", 19092)
    kafka = Kafka(settings)
    (node,) = kafka.nodes
    kafka._write_config(node)
    text = kafka.server_properties.read_text(encoding="utf-8")
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "controller.quorum.bootstrap.servers=127.0.0.1:19093" in text
    assert f"log.dirs={kafka.data_dir}" in text
    assert "${" not in text
    # SCRAM over TLS two ports up; clients pointed there still find the plain listener
    assert "SASL_SSL://127.0.0.1:19094" in text
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in text
    assert f"ssl.keystore.location={tmp_path / 'state' / 'tls' / 'server.pem'}" in text
    scram = {"bootstrap_servers": "127.0.0.1:19094", "security_protocol": "SASL_SSL"}
    assert broker_address(_settings(tmp_path, kafka=scram).kafka) == ("127.0.0.1", 19092)


def test_a_cluster_puts_three_controller_brokers_on_the_next_ports(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka={"bootstrap_servers": "127.0.0.1:19092"})
    settings = settings.model_copy(
        update={"stack": settings.stack.model_copy(update={"kafka_brokers": 3})}
    )
    kafka = Kafka(settings)
    assert [(n.node_id, n.port) for n in kafka.nodes] == [(1, 19092), (2, 19095), (3, 19098)]
    assert len({n.paths.state for n in kafka.nodes}) == 3
    voters = "controller.quorum.voters=1@127.0.0.1:19093,2@127.0.0.1:19096,3@127.0.0.1:19099"
    for node in kafka.nodes:
        kafka._write_config(node)
        text = node.server_properties.read_text(encoding="utf-8")
        assert f"node.id={node.node_id}\n" in text
        assert voters in text
        assert "controller.quorum.bootstrap.servers" not in text
        assert f"listeners=PLAINTEXT://127.0.0.1:{node.port}," in text
        assert f"SASL_SSL://127.0.0.1:{node.sasl_port}" in text
        assert f"log.dirs={node.data_dir}" in text
        assert "offsets.topic.replication.factor=3" in text
        assert "min.insync.replicas=2" in text
        assert "${" not in text


def test_maven_progress_reports_every_25th_download() -> None:
    progress = MavenProgress()
    line = "[INFO] Downloaded from central: https://example.invalid/a/x-1.jar (3 kB at 9 kB/s)"
    shown = [progress(line) for _ in range(50)]
    assert [s for s in shown if s] == [
        "maven: 25 files fetched (latest x-1.jar)",
        "maven: 50 files fetched (latest x-1.jar)",
    ]
    assert progress("[INFO] Copying x-1.jar") is None


def test_start_refuses_a_port_someone_else_holds(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = Mosquitto(_settings(tmp_path, mqtt={"port": port}))
        with pytest.raises(ServiceError, match=f"127.0.0.1:{port} is already taken") as err:
            broker.start(lambda _line: None)
    assert "KOTAFLOW_MQTT__PORT" in str(err.value)


def test_start_error_quotes_only_the_latest_run_of_the_log(tmp_path: Path) -> None:
    paths = Paths(state=tmp_path, cache=tmp_path)
    paths.log.parent.mkdir(parents=True)
    paths.log.write_text(
        f"{START_MARKER} earlier: daemon\nold trouble\n{START_MARKER} now: daemon\nnew trouble\n",
        encoding="utf-8",
    )
    assert log_tail(paths) == f"{START_MARKER} now: daemon\nnew trouble"


def test_config_drift_is_about_settings_not_comments(tmp_path: Path) -> None:
    rendered = tmp_path / "server.properties"
    rendered.write_text("# one node\nnode.id=1\n", encoding="utf-8")
    notes: list[str] = []
    note_config_drift("kafka", rendered, "# one node or three\n\nnode.id=1\n", notes.append)
    assert notes == []
    note_config_drift("kafka", rendered, "# one node\nnode.id=2\n", notes.append)
    assert len(notes) == 1
    assert "stack down && kotaflow stack up" in notes[0]


def test_only_the_tls_listener_names_sessions_after_the_account(tmp_path: Path) -> None:
    """Devices' listener: a device can never hold the bridge's session. The loopback one is
    for tests and benchmarks, which log in from many client ids with one account."""
    settings = _settings(tmp_path)
    blocks = listener_blocks(Mosquitto(settings)._config_text())
    option = "use_username_as_clientid true"
    mqtt = settings.mqtt
    assert option in blocks[f"listener {mqtt.tls_port} {mqtt.host}"]
    assert option not in blocks[f"listener {mqtt.port} {mqtt.host}"]
    assert not any(line.startswith("use_username_as_clientid") for line in blocks[""])
