"""``deploy/compose.yaml``: loads like ``docker compose config`` and is built as intended."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kotaflow.cli import app
from kotaflow.settings import Settings
from tests.deploy import compose_loader

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SECRETS = {
    "KOTAFLOW_INFLUX_ADMIN_PASSWORD": "admin-password",
    "KOTAFLOW_INFLUX_ADMIN_TOKEN": "admin-token",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
    "KOTAFLOW_GRAFANA_ALERT_EMAIL": "pusdalops@example.id",
}
KOTAFLOW_SERVICES = {
    "bridge",
    "process",
    "alert",
    "kafka-topics",
    "grafana-provisioning",
    "mqtt-credentials",
}
LONG_RUNNING = {"mosquitto", "kafka", "influxdb", "bridge", "process", "alert", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _resolved(settings: Settings, env: dict[str, str]) -> Any:
    done = compose_loader.load(COMPOSE, env, settings.stack.cache_dir)
    if done is None:
        pytest.skip("neither `docker compose` nor Go is available to load the compose file")
    return done


def test_compose_config_accepts_the_file_with_its_secrets_set(settings: Settings) -> None:
    done = _resolved(settings, SECRETS)
    assert done.returncode == 0, done.stderr
    project = yaml.safe_load(done.stdout)
    assert set(project["services"]) == LONG_RUNNING | KOTAFLOW_SERVICES | {"influxdb-tokens"}
    grafana = project["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "grafana-password"
    health = project["services"]["mosquitto"]["healthcheck"]["test"][1]
    assert '"$(sed' in health  # the password is read in the container, not written here
    assert "-u kotaflow-health" in health


def test_compose_config_refuses_to_start_without_secrets(settings: Settings) -> None:
    done = _resolved(settings, {})
    assert done.returncode != 0
    for name in SECRETS:
        assert name in done.stderr


def test_images_are_the_official_ones_and_grafana_matches_the_sdk(compose: dict[str, Any]) -> None:
    images = {name: s.get("image", "") for name, s in compose["services"].items()}
    assert re.fullmatch(r"eclipse-mosquitto:2\.\d+\.\d+", images["mosquitto"])
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", images["kafka"])
    assert re.fullmatch(r"influxdb:2\.7\.\d+", images["influxdb"])
    grafana = re.fullmatch(r"grafana/grafana-oss:(\d+\.\d+)\.\d+", images["grafana"])
    assert grafana is not None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sdk = next(d for d in project["dependencies"] if d.startswith("grafana-foundation-sdk"))
    assert sdk.endswith(f"!{grafana.group(1)}.0"), (sdk, images["grafana"])


def test_kafka_runs_kraft_without_zookeeper(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in key for key in kafka)
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # kafka-topics creates them


def test_long_running_services_restart_and_report_health(compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        service = compose["services"][name]
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_no_secret_is_written_into_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and isinstance(value, str) and value:
                assert value.startswith("${") or value.startswith("/"), (name, key, value)


def test_every_kotaflow_service_runs_a_real_kotaflow_command(compose: dict[str, Any]) -> None:
    runner = CliRunner()
    for name in KOTAFLOW_SERVICES - {"kafka-topics"}:
        command = compose["services"][name]["command"]
        if compose["services"][name].get("entrypoint") == ["/bin/sh", "-c"]:
            (script,) = command
            command = shlex.split(script.split("&&")[0])[1:]  # the kotaflow part
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_mosquitto_and_the_services_use_the_generated_accounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    (script,) = services["mqtt-credentials"]["command"]
    directory = shlex.split(script.split("&&")[0])[-1]
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert f"password_file {directory}/passwd" in conf
    assert f"acl_file {directory}/acl" in conf
    assert "allow_anonymous false" in conf
    mounts = [m.split(":") for m in services["mosquitto"]["volumes"]]
    assert ["mqtt-credentials", directory, "ro"] in mounts
    env = compose["x-kotaflow"]["environment"]
    assert env["KOTAFLOW_MQTT__CREDENTIALS_FILE"] == f"{directory}/credentials.json"
    for name in ("bridge", "process", "alert"):
        volumes = services[name].get("volumes") or compose["x-kotaflow"]["volumes"]
        assert f"mqtt-credentials:{directory}:ro" in volumes, name
    assert services["mosquitto"]["depends_on"]["mqtt-credentials"]["condition"] == (
        "service_completed_successfully"
    )


def test_grafana_gets_kotaflows_provisioning_and_the_read_only_token(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    render = services["grafana-provisioning"]["command"]
    out_dir = render[render.index("render") + 1]
    token_file = render[render.index("--influx-token-file") + 1]
    volume_of = {
        m.split(":")[1]: m.split(":")[0] for m in services["grafana-provisioning"]["volumes"]
    }
    grafana_mounts = {m.split(":")[0]: m.split(":")[1] for m in services["grafana"]["volumes"]}
    assert grafana_mounts[volume_of[out_dir]] == "/etc/grafana/provisioning"
    assert grafana_mounts["influx-tokens"] == str(Path(token_file).parent)
    depends = services["grafana"]["depends_on"]
    assert depends["grafana-provisioning"]["condition"] == "service_completed_successfully"


def test_services_read_the_pipeline_token_the_token_job_writes(compose: dict[str, Any]) -> None:
    env = compose["x-kotaflow"]["environment"]
    script = (DEPLOY / "influxdb" / "kotaflow-tokens.sh").read_text()
    token_file = env["KOTAFLOW_PROCESSING__INFLUX_TOKEN_FILE"]
    assert Path(token_file).name in script
    jobs = compose["services"]["influxdb-tokens"]
    assert jobs["environment"]["TOKENS_DIR"] == str(Path(token_file).parent)


def test_the_image_holds_every_package_the_wheel_ships() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    for package in wheel["targets"]["wheel"]["packages"]:
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/**" in ignore, package
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE)
    for source in (p for line in copied for p in shlex.split(line)):
        assert f"!{source}" in ignore or f"!{source}/**" in ignore, source
    assert re.search(r"^USER kotaflow$", dockerfile, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in dockerfile


def test_the_topic_job_calls_the_local_stacks_topic_plan(compose: dict[str, Any]) -> None:
    """The job's script runs against the real module: only the final Kafka call is skipped."""
    (script,) = compose["services"]["kafka-topics"]["command"]
    calls: list[tuple[Any, ...]] = []
    namespace: dict[str, Any] = {}
    exec(
        compile(script.replace("ensure_topics(kafka,", "record(kafka,"), "kafka-topics", "exec"),
        {"record": lambda *a: calls.append(a)},
        namespace,
    )
    ((kafka, wanted, report),) = calls
    assert set(wanted) == {
        kafka.topics.raw,
        kafka.topics.readings,
        kafka.topics.deadletter,
        kafka.topics.alerts,
    }
    assert callable(report)
    assert "ensure_topics" in namespace
