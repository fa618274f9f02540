"""``deploy/compose.kafka-cluster.yaml``: the 3-broker profile, merged over compose.yaml by
the same compose-go loader as ``docker compose -f compose.yaml -f compose.kafka-cluster.yaml
config``, is a cluster whose nodes agree with each other and whose clients know them all."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local.kafka_topics import replication_for
from kotaflow.settings import Settings, load_settings
from tests.deploy import compose_loader
from tests.deploy.test_compose import COMPOSE, DEPLOY, KAFKA_CLIENTS, SECRETS

CLUSTER = DEPLOY / "compose.kafka-cluster.yaml"
NODES = ("kafka", "kafka-2", "kafka-3")
STORAGE = {"kafka": "kafka-storage", "kafka-2": "kafka-2-storage", "kafka-3": "kafka-3-storage"}


@pytest.fixture(scope="module")
def project(settings: Settings) -> dict[str, Any]:
    done = compose_loader.load(COMPOSE, SECRETS, settings.stack.cache_dir, [CLUSTER])
    if done is None:
        pytest.skip("neither `docker compose` nor Go is available to load the compose files")
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert isinstance(data, dict)
    return data


def _env(project: dict[str, Any], name: str) -> dict[str, str]:
    return {k: str(v) for k, v in project["services"][name]["environment"].items()}


def _data_volume(project: dict[str, Any], name: str) -> str:
    (volume,) = [
        v["source"]
        for v in project["services"][name]["volumes"]
        if v["target"] == "/var/lib/kafka/data"
    ]
    return str(volume)


def test_the_profile_adds_two_nodes_and_their_storage_jobs(project: dict[str, Any]) -> None:
    base = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    added = set(project["services"]) - set(base)
    assert added == {"kafka-2", "kafka-3", "kafka-2-storage", "kafka-3-storage"}
    for name in NODES:
        service = project["services"][name]
        assert service["image"] == base["kafka"]["image"], name
        assert service["restart"] == "unless-stopped", name
        depends = service["depends_on"]
        assert depends[STORAGE[name]]["condition"] == "service_completed_successfully"


def test_nodes_form_one_quorum_of_three_controllers(project: dict[str, Any]) -> None:
    envs = {name: _env(project, name) for name in NODES}
    assert sorted(e["KAFKA_NODE_ID"] for e in envs.values()) == ["1", "2", "3"]
    assert len({e["CLUSTER_ID"] for e in envs.values()}) == 1
    assert len({e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs.values()}) == 1
    voters = dict(v.split("@") for v in envs["kafka"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    for name, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        controller = re.search(r"CONTROLLER://[^:,]*:(\d+)", env["KAFKA_LISTENERS"])
        assert controller is not None
        assert voters[env["KAFKA_NODE_ID"]] == f"{name}:{controller.group(1)}"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"BROKER://{name}:9094"
        # The quorum talks TLS with client certificates: no other container joins it.
        assert "CONTROLLER:SSL" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
        for key in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG", "DEFAULT"):
            assert env[f"KAFKA_{key}_REPLICATION_FACTOR"] == "3", (name, key)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        health = project["services"][name]["healthcheck"]["test"][1]
        assert f"--bootstrap-server {name}:9094" in health


def test_each_node_formats_and_keeps_its_own_storage(project: dict[str, Any]) -> None:
    volumes = {name: _data_volume(project, name) for name in NODES}
    assert len(set(volumes.values())) == 3
    for name, job in STORAGE.items():
        assert _data_volume(project, job) == volumes[name], job
        assert _env(project, job).items() >= _env(project, name).items(), job
        assert volumes[name] in project["volumes"]


def test_the_certificate_names_every_node(project: dict[str, Any]) -> None:
    (script,) = project["services"]["kafka-tls"]["command"]
    names = re.search(r"ensure_tls\(Path\(\"[^\"]+\"\), (\[[^\]]*\])", script)
    assert names is not None, script
    assert set(yaml.safe_load(names.group(1))) == set(NODES)


def test_clients_know_every_node_and_topics_get_three_replicas(
    project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = {f"{n}:9094" for n in NODES}
    for name in KAFKA_CLIENTS:
        env = _env(project, name)
        assert set(env["KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS"].split(",")) == endpoints, name
    for key in [k for k in os.environ if k.startswith("KOTAFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in _env(project, "kafka-topics").items():
        if key.startswith("KOTAFLOW_KAFKA__LAYOUT__"):
            monkeypatch.setenv(key, value)
    layout = load_settings().kafka.layout
    assert replication_for(layout, 3) == (3, 2)
    depends = project["services"]["kafka-topics"]["depends_on"]
    assert {n for n in NODES if depends.get(n, {}).get("condition") == "service_healthy"} == set(
        NODES
    )


def test_the_profile_file_says_how_to_use_it() -> None:
    text = Path(CLUSTER).read_text(encoding="utf-8")
    assert "docker compose -f compose.yaml -f compose.kafka-cluster.yaml up" in text
