"""``deploy/compose.yaml``: loads like ``docker compose config`` and is built as intended."""

from __future__ import annotations

import os
import re
import shlex
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from deploy import kafka_cli
from deploy.influxdb.reconcile import (
    AGGREGATE,
    ALERT,
    GRAFANA,
    HEALTH,
    PRODUCTION_ROLES,
    PUBLIC,
    STORE,
)
from deploy.local.kafka_topics import TopicsOutcome
from deploy.local.mosquitto import VERSION as MOSQUITTO_VERSION
from deploy.local.tls import TlsFiles, ensure_tls
from ingest.sizes import SizeLimits
from kotaflow.cli import app
from kotaflow.settings import Settings, load_settings
from tests.deploy import compose_loader

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SECRETS = {
    "KOTAFLOW_INFLUX_ADMIN_PASSWORD": "admin-password",
    "KOTAFLOW_INFLUX_ADMIN_TOKEN": "admin-token",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}
"""Required; KOTAFLOW_GRAFANA_ALERT_EMAIL is not (Grafana notifies only when told to)."""
KOTAFLOW_SERVICES = {
    "bridge",
    "process",
    "alert",
    "public",
    "kafka-topics",
    "grafana-provisioning",
    "mqtt-credentials",
    "mqtt-tls",
    "kafka-tls",
    "public-tls",
    "influxdb-tokens",
}
KAFKA_CLIENTS = {"bridge", "process", "alert", "kafka-topics"}
"""The kotaflow services that talk to Kafka (grafana-provisioning and the other jobs do not)."""
SCRAM_SECRET = "kafka_scram_password"
LONG_RUNNING = {
    "mosquitto",
    "kafka",
    "influxdb",
    "bridge",
    "process",
    "alert",
    "public",
    "grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _resolved(settings: Settings, env: dict[str, str]) -> Any:
    return _resolved_file(settings, COMPOSE, env)


def _resolved_file(settings: Settings, path: Path, env: dict[str, str]) -> Any:
    done = compose_loader.load(path, env, settings.stack.cache_dir)
    if done is None:
        pytest.skip("neither `docker compose` nor Go is available to load the compose file")
    return done


def test_compose_config_accepts_the_file_with_its_secrets_set(settings: Settings) -> None:
    done = _resolved(settings, SECRETS)
    assert done.returncode == 0, done.stderr
    project = yaml.safe_load(done.stdout)
    assert set(project["services"]) == LONG_RUNNING | KOTAFLOW_SERVICES | {
        "influxdb-tokens",
        "kafka-storage",
    }
    grafana = project["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "grafana-password"
    health = project["services"]["mosquitto"]["healthcheck"]["test"][1]
    assert '"$(sed' in health  # the password is read in the container, not written here
    assert "-u kotaflow-health" in health


def test_compose_config_accepts_two_bridge_replicas(settings: Settings) -> None:
    """``docker compose up --scale bridge=2``: the file with the bridge's ``scale: 2`` loads,
    and the replicas cannot clash (no container name, no published port, one client id from
    the settings, so both join one lease group; ingest/lease.py)."""
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    data["services"]["bridge"]["scale"] = 2
    scaled = DEPLOY / f".compose-scale-test-{os.getpid()}.yaml"  # beside it: same relative paths
    try:
        scaled.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        done = _resolved_file(settings, scaled, SECRETS)
    finally:
        scaled.unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr
    bridge = yaml.safe_load(done.stdout)["services"]["bridge"]
    assert bridge["scale"] == 2
    assert "container_name" not in bridge
    assert not bridge.get("ports")
    assert "--client-id" not in bridge["command"]  # every replica: bridge.client_id


def test_compose_config_refuses_to_start_without_secrets(settings: Settings) -> None:
    done = _resolved(settings, {})
    assert done.returncode != 0
    for name in SECRETS:
        assert name in done.stderr


def test_images_are_the_official_ones_and_grafana_matches_the_sdk(compose: dict[str, Any]) -> None:
    images = {name: s.get("image", "") for name, s in compose["services"].items()}
    # one Mosquitto version line: production runs what the local stack builds and tests
    assert images["mosquitto"] == f"eclipse-mosquitto:{MOSQUITTO_VERSION}"
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", images["kafka"])
    assert re.fullmatch(r"influxdb:2\.7\.\d+", images["influxdb"])
    grafana = re.fullmatch(r"grafana/grafana-oss:(\d+\.\d+)\.\d+", images["grafana"])
    assert grafana is not None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
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


def _kotaflow_step(script: str) -> str:
    """The kotaflow command among a job's ``&&``-joined shell steps."""
    return next(p for p in script.split("&&") if p.strip().startswith("kotaflow"))


def test_every_kotaflow_service_runs_a_real_kotaflow_command(compose: dict[str, Any]) -> None:
    runner = CliRunner()
    for name in KOTAFLOW_SERVICES - {"kafka-tls"}:  # a python -c job
        command = compose["services"][name]["command"]
        if compose["services"][name].get("entrypoint") == ["/bin/sh", "-c"]:
            (script,) = command
            command = shlex.split(_kotaflow_step(script))[1:]
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_mosquitto_and_the_services_use_the_generated_accounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    (script,) = services["mqtt-credentials"]["command"]
    directory = shlex.split(script.split("&&")[0])[-1]
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
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


def test_services_read_the_per_stage_tokens_the_token_job_writes(compose: dict[str, Any]) -> None:
    """The job is `kotaflow influxdb setup` (the local stack's code path), writing one
    <role>.token per production role (no shared pipeline token) where the services look."""
    env = compose["x-kotaflow"]["environment"]
    folder = env["KOTAFLOW_PROCESSING__INFLUX_TOKEN_DIR"]
    assert "KOTAFLOW_PROCESSING__INFLUX_TOKEN_FILE" not in env
    job = compose["services"]["influxdb-tokens"]
    (script,) = job["command"]
    argv = shlex.split(_kotaflow_step(script))
    assert argv[:3] == ["kotaflow", "influxdb", "setup"]
    assert "--role" not in argv  # the default roles:
    assert set(PRODUCTION_ROLES) == {STORE, AGGREGATE, ALERT, HEALTH, GRAFANA, PUBLIC}
    assert argv[argv.index("--tokens-dir") + 1] == folder
    assert _mounts(job)[folder] == "influx-tokens"
    assert job["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_the_setup_job_does_influxdbs_initial_setup_from_the_settings(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """No image init (it would make the first bucket with its own retention): the job hands
    the admin password and operator token from deploy/.env to `kotaflow influxdb setup` in
    0600 files, with no secret on a command line; the shell part runs here for real."""
    assert not any(
        "DOCKER_INFLUXDB_INIT" in k for k in compose["services"]["influxdb"].get("environment", {})
    )
    job = compose["services"]["influxdb-tokens"]
    (script,) = job["command"]
    steps = [step.strip() for step in script.split("&&")]
    (setup,) = [shlex.split(s) for s in steps if s.startswith("kotaflow influxdb setup")]
    files = {a: setup[setup.index(a) + 1] for a in ("--token-file", "--init-password-file")}
    assert setup[setup.index("--init-user") + 1] == "kotaflow-admin"
    env = job["environment"]
    assert (
        env["INFLUX_ADMIN_PASSWORD"] == "${KOTAFLOW_INFLUX_ADMIN_PASSWORD:?set it in deploy/.env}"
    )
    assert env["INFLUX_OPERATOR_TOKEN"] == "${KOTAFLOW_INFLUX_ADMIN_TOKEN:?set it in deploy/.env}"
    before = steps[: steps.index(next(s for s in steps if s.startswith("kotaflow")))]
    shell = " && ".join(before).replace("$$", "$").replace("/tmp/", f"{tmp_path}/")
    done = subprocess.run(
        ["sh", "-c", shell],
        env={
            "PATH": os.environ["PATH"],
            "INFLUX_ADMIN_PASSWORD": "pw",
            "INFLUX_OPERATOR_TOKEN": "tk",
        },
        check=True,
    )
    assert done.returncode == 0
    for option, want in (("--init-password-file", "pw"), ("--token-file", "tk")):
        made = tmp_path / Path(files[option]).name
        assert made.read_text(encoding="utf-8") == want
        assert made.stat().st_mode & 0o077 == 0, option
    assert "umask 077" in before


def test_the_image_holds_every_package_the_wheel_ships() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hatch"][
        "build"
    ]
    for package in wheel["targets"]["wheel"]["packages"]:
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/**" in ignore, package
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE)
    for source in (p for line in copied for p in shlex.split(line)):
        assert f"!{source}" in ignore or f"!{source}/**" in ignore, source
    assert re.search(r"^USER kotaflow$", dockerfile, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in dockerfile


def test_the_topic_job_runs_the_topics_command_with_the_services_login(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's command runs through the real CLI, with the job's environment and its files
    made in ``tmp_path``: only the final Kafka call is recorded instead of made."""
    password = _as_the_service_sees_it(compose, "kafka-topics", tmp_path, monkeypatch)
    job = compose["services"]["kafka-topics"]
    assert "entrypoint" not in job  # the image's `kotaflow`
    calls: list[tuple[Any, ...]] = []

    def record(kafka: Any, report: Any, options: Any, limits: Any) -> TopicsOutcome:
        calls.append((kafka, report, options, limits))
        return TopicsOutcome(replication_factor=1, configs={})

    monkeypatch.setattr(kafka_cli, "create_kotaflow_topics", record)
    result = CliRunner().invoke(app, job["command"])
    assert result.exit_code == 0, result.output
    ((kafka, report, options, limits),) = calls
    assert kafka == load_settings().kafka
    assert limits == SizeLimits.of(load_settings().bridge)
    assert callable(report)
    assert options["security_protocol"] == "SASL_SSL"  # kotaflow.kafka.client_options
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "kotaflow"
    assert options["sasl_plain_password"] == password
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def _kafka_env(compose: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}


def _endpoints(listeners: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    found = {}
    for item in listeners.split(","):
        name, rest = item.split("://")
        host, port = rest.rsplit(":", 1)
        found[name] = (host, int(port))
    return found


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a path relative to deploy/)."""
    return {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes") or []}


def _provided(compose: dict[str, Any], name: str, path: str) -> bool:
    """Whether ``path`` exists in service ``name``: a file in one of its mounts (checked on
    disk for a bind mount of this repository) or one of its secrets."""
    service = compose["services"][name]
    if path == "/run/secrets":  # compose mounts each secret of a service in it
        return bool(service.get("secrets"))
    if path.startswith("/run/secrets/"):
        return path.removeprefix("/run/secrets/") in (service.get("secrets") or [])
    for target, source in _mounts(service).items():
        if path == target or path.startswith(target + "/"):
            if source.startswith("."):
                return (DEPLOY / source / Path(path).relative_to(target)).exists()
            return source in compose["volumes"]
    return False


def _tls_volume_files(compose: dict[str, Any]) -> set[str]:
    """The files the kafka-tls job writes into its volume, named by deploy/local/tls.py."""
    job = compose["services"]["kafka-tls"]
    (script,) = job["command"]
    state_dir = re.search(r'ensure_tls\(Path\("([^"]+)"\)', script)
    assert state_dir is not None, script
    files = TlsFiles.of(Path(state_dir.group(1)))
    (target,) = [t for t, source in _mounts(job).items() if source == "kafka-tls"]
    assert files.ca_cert.parent == Path(target)  # the volume holds the files themselves
    return {files.ca_cert.name, files.server_pem.name}


def _as_the_service_sees_it(
    compose: dict[str, Any], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Set the service's environment, its container paths mapped to files in ``tmp_path``
    (a SCRAM password, a CA made by deploy/local/tls.py) or in deploy/; return the password."""
    for key in [k for k in os.environ if k.startswith("KOTAFLOW_")]:
        monkeypatch.delenv(key)
    password = "a1b2c3d4e5f6"
    secrets = tmp_path / "secrets"
    secrets.mkdir(parents=True)
    (secrets / SCRAM_SECRET).write_text(password, encoding="utf-8")
    tls = ensure_tls(tmp_path / "kafka", ["kafka"], lambda _: None)
    places = {"/run/secrets": secrets, "/etc/kotaflow": DEPLOY / "config"}
    for target, source in _mounts(compose["services"][name]).items():
        if source == "kafka-tls":
            places[target] = tls.ca_cert.parent
    for key, value in compose["services"][name]["environment"].items():
        value = str(value)
        for target, place in places.items():
            if value.startswith(target + "/"):
                value = str(place / Path(value).relative_to(target))
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KOTAFLOW_STACK__STATE_DIR", str(tmp_path / "no-local-stack"))
    return password


def test_no_kotaflow_service_talks_plaintext_to_kafka(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advertised = _endpoints(_kafka_env(compose)["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":")
        for item in _kafka_env(compose)["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    sasl_ssl = {f"{h}:{p}" for n, (h, p) in advertised.items() if protocols[n] == "SASL_SSL"}
    kotaflow = {
        n for n, s in compose["services"].items() if s.get("image", "").startswith("kotaflow:")
    }
    assert kotaflow == KOTAFLOW_SERVICES
    for name in sorted(kotaflow):
        with monkeypatch.context() as env:
            _as_the_service_sees_it(compose, name, tmp_path / name, env)
            kafka = load_settings().kafka
        assert kafka.security_protocol == "SASL_SSL", name
        assert kafka.sasl_mechanism == "SCRAM-SHA-512", name
        assert kafka.sasl_username == "kotaflow", name
        assert kafka.sasl_password is None, name  # only ever from the secret file
        assert set(kafka.bootstrap_servers.split(",")) <= sasl_ssl, name


def test_the_scram_password_is_a_compose_secret(compose: dict[str, Any]) -> None:
    secret = compose["secrets"][SCRAM_SECRET]
    assert set(secret) == {"file"}  # not `environment:` nor `content:`: never in YAML or .env
    secret_file = DEPLOY / secret["file"]
    ignore = (secret_file.parent / ".gitignore").read_text(encoding="utf-8").split()
    assert ignore == ["*", "!.gitignore"]  # the operator's file never lands in git
    assert "KOTAFLOW_KAFKA__SASL_PASSWORD" not in compose["x-kotaflow"]["environment"]
    with_secret = {
        n for n, s in compose["services"].items() if SCRAM_SECRET in (s.get("secrets") or [])
    }
    assert with_secret == KAFKA_CLIENTS | {"kafka", "kafka-storage"}  # least privilege
    for name in KAFKA_CLIENTS:
        env = compose["services"][name]["environment"]
        assert env["KOTAFLOW_KAFKA__SASL_PASSWORD_FILE"] == f"/run/secrets/{SCRAM_SECRET}"
    assert compose["services"]["kafka-storage"]["environment"]["SCRAM_PASSWORD_FILE"] == (
        f"/run/secrets/{SCRAM_SECRET}"
    )
    # The broker's own login reads it through Kafka's DirectoryConfigProvider ($$: no compose
    # interpolation), as does the CLI tools' client.properties.
    kafka = _kafka_env(compose)
    provider = kafka["KAFKA_CONFIG_PROVIDERS"]
    reference = f"${{{provider}:/run/secrets:{SCRAM_SECRET}}}"
    assert (
        f'password="${reference}"'
        in kafka["KAFKA_LISTENER_NAME_BROKER_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    )
    client = (DEPLOY / "kafka" / "client.properties").read_text(encoding="utf-8")
    assert reference in client


def test_kafka_listeners_and_advertised_listeners_agree(compose: dict[str, Any]) -> None:
    env = _kafka_env(compose)
    listeners = _endpoints(env["KAFKA_LISTENERS"])
    advertised = _endpoints(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controllers = set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    assert set(protocols) == set(listeners)
    assert set(advertised) == set(listeners) - controllers
    for name, (host, port) in advertised.items():
        assert listeners[name][1] == port, name
        assert protocols[name] == "SASL_SSL", name  # nothing else but the controller
        assert host == "kafka", name  # the service name, and a name on the certificate
        # The image's configure script takes listener names with "SSL://" or "SASL_" as a
        # request for its JKS conventions; ours are configured with listener.name.* settings.
        assert "SSL" not in name, name
    for name in controllers:
        assert protocols[name] == "PLAINTEXT"
        host, port = listeners[name]
        assert host == "127.0.0.1"  # unreachable from the other containers
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@{host}:{port}"
    broker = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    assert broker in advertised
    prefix = f"KAFKA_LISTENER_NAME_{broker}_"
    assert env[f"{prefix}SSL_KEYSTORE_TYPE"] == "PEM"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"
    (script,) = compose["services"]["kafka-tls"]["command"]
    assert '["kafka"]' in script  # the certificate names the advertised host
    endpoint = "{}:{}".format(*advertised[broker])
    assert compose["x-kotaflow"]["environment"]["KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS"] == endpoint
    health = compose["services"]["kafka"]["healthcheck"]["test"][1]
    assert f"--bootstrap-server {endpoint}" in health
    # kafka-storage formats with the broker's own configuration.
    assert compose["services"]["kafka-storage"]["environment"].items() >= (
        compose["services"]["kafka"]["environment"].items()
    )


def test_every_file_volume_and_secret_the_kafka_services_use_exists(
    compose: dict[str, Any],
) -> None:
    tls_files = _tls_volume_files(compose)
    for name in KAFKA_CLIENTS | {"kafka", "kafka-storage", "kafka-tls"}:
        service = compose["services"][name]
        for secret in service.get("secrets") or []:
            assert secret in compose["secrets"], (name, secret)
        for source in _mounts(service).values():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
        if name == "kafka-tls":
            continue  # writes the TLS files; does not talk to Kafka
        paths = [
            v
            for k, v in service.get("environment", {}).items()
            if "KAFKA" in k or k == "SCRAM_PASSWORD_FILE"
            if isinstance(v, str) and v.startswith("/") and k != "KAFKA_LOG_DIRS"
        ]
        paths += [p for p in service.get("entrypoint") or [] if p.startswith("/etc/kafka/")]
        for path in paths:
            assert _provided(compose, name, path), (name, path)
            if "/tls/" in path or path.startswith("/run/kafka-tls/"):
                assert Path(path).name in tls_files, (name, path)
    kafka = compose["services"]["kafka"]
    assert _provided(compose, "kafka", _kafka_env(compose)["KAFKA_LOG_DIRS"])
    health = shlex.split(kafka["healthcheck"]["test"][1])
    config = health[health.index("--command-config") + 1]
    assert _provided(compose, "kafka", config)
    client = dict(
        line.split("=", 1)
        for line in (DEPLOY / "kafka" / "client.properties")
        .read_text(encoding="utf-8")
        .splitlines()
        if line and not line.startswith("#")
    )
    assert _provided(compose, "kafka", client["ssl.truststore.location"])
    assert Path(client["ssl.truststore.location"]).name in tls_files
    depends = kafka["depends_on"]
    for job in ("kafka-tls", "kafka-storage"):
        assert depends[job]["condition"] == "service_completed_successfully"


FAKE_KAFKA_TOOLS = {
    # The image's renderer: writes server.properties (log.dirs from KAFKA_LOG_DIRS).
    "kafka-run-class.sh": 'echo "log.dirs=$KAFKA_LOG_DIRS" > "${@: -1}/server.properties"',
    # The storage tool: records its arguments, and the content of any @file among them.
    "kafka-storage.sh": (
        'for a in "$@"; do echo "ARG $a"; case $a in @*) sed "s/^/FILE /" "${a#@}";; esac; done'
        ' >> "$RECORD"; touch "$DATA/meta.properties"'
    ),
}


def _format_storage(tmp_path: Path, password: bytes) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    for tool, body in FAKE_KAFKA_TOOLS.items():
        (home / "bin" / tool).write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
        (home / "bin" / tool).chmod(0o755)
    (tmp_path / "password").write_bytes(password)
    (tmp_path / "data").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_HOME": str(home),
        "KAFKA_LOG_DIRS": str(tmp_path / "data"),
        "DATA": str(tmp_path / "data"),
        "CLUSTER_ID": "4Uy5yif-Rq6RaUUCLtTZuw",
        "SCRAM_USER": "kotaflow",
        "SCRAM_PASSWORD_FILE": str(tmp_path / "password"),
        "RECORD": str(tmp_path / "record"),
    }
    script = DEPLOY / "kafka" / "format-storage.sh"
    return subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, check=False
    )


def test_storage_is_formatted_once_with_the_scram_user_and_no_password_on_a_command_line(
    tmp_path: Path,
) -> None:
    done = _format_storage(tmp_path, b"0123abcdef")
    assert done.returncode == 0, done.stderr
    record = (tmp_path / "record").read_text(encoding="utf-8").splitlines()
    assert "FILE --add-scram" in record
    assert "FILE SCRAM-SHA-512=[name=kotaflow,iterations=8192,password=0123abcdef]" in record
    assert "ARG --cluster-id" in record
    assert not any("0123abcdef" in line for line in record if line.startswith("ARG"))
    assert "0123abcdef" not in done.stdout + done.stderr
    again = _format_storage(tmp_path, b"0123abcdef")
    assert again.returncode == 0
    assert "formatted already" in again.stdout
    assert (tmp_path / "record").read_text(
        encoding="utf-8"
    ).splitlines() == record  # not formatted twice


@pytest.mark.parametrize(
    ("password", "why"),
    [(b"0123abcdef\n", "newline"), (b"", "empty"), (b'pass,word"', "letters, digits")],
)
def test_storage_format_refuses_a_password_the_broker_would_read_differently(
    tmp_path: Path, password: bytes, why: str
) -> None:
    done = _format_storage(tmp_path, password)
    assert done.returncode != 0
    assert why in done.stderr
    assert not (tmp_path / "record").exists()


MQTT_CLIENTS = {"bridge", "process", "alert"}
"""The long-running kotaflow services (the bridge reads MQTT; the others' health checks may)."""


def _conf_lines() -> list[list[str]]:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    return [line.split() for line in conf.splitlines() if line and not line.startswith("#")]


def test_mqtt_is_published_on_the_host_only_over_tls(compose: dict[str, Any]) -> None:
    """No plaintext MQTT port on the host: the broker's only listener is TLS, on 8883."""
    listeners = [line[1:] for line in _conf_lines() if line[0] == "listener"]
    assert listeners == [["8883", "0.0.0.0"]]
    (published,) = compose["services"]["mosquitto"]["ports"]
    assert published.rsplit(":", 1)[-1] == "8883"
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            assert port.rsplit(":", 1)[-1] != "1883", name


def test_the_tls_listener_uses_files_a_compose_job_makes(compose: dict[str, Any]) -> None:
    """certfile/keyfile are in the volume the mqtt-tls job fills with `kotaflow devices tls`
    (deploy/local/tls.py), the certificate names the host the services connect to, and
    Mosquitto starts only after the job."""
    services = compose["services"]
    conf = {line[0]: line[1:] for line in _conf_lines()}
    job = services["mqtt-tls"]
    (script,) = job["command"]
    argv = shlex.split(script.split("&&")[0])
    assert argv[:3] == ["kotaflow", "devices", "tls"]
    files = TlsFiles.in_folder(Path(argv[3]))
    (target,) = [t for t, source in _mounts(job).items() if source == "mqtt-tls"]
    assert Path(target) == files.ca_cert.parent
    assert conf["certfile"] == [str(files.server_cert)]
    assert conf["keyfile"] == [str(files.server_key)]
    assert _mounts(services["mosquitto"])[target] == "mqtt-tls"
    assert services["mosquitto"]["depends_on"]["mqtt-tls"]["condition"] == (
        "service_completed_successfully"
    )
    env = compose["x-kotaflow"]["environment"]
    hosts = [argv[i + 1] for i, a in enumerate(argv) if a == "--host"]
    assert env["KOTAFLOW_MQTT__HOST"] in hosts
    assert "$${MQTT_TLS_HOST}" in hosts  # the devices' name, from deploy/.env
    assert "chown 1883:1883" in script  # Mosquitto's uid reads its key


def test_kotaflow_services_connect_to_mqtt_over_tls_and_verify_it(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each MQTT client's settings as the service sees them: TLS to 8883, the job's CA."""
    for name in sorted(MQTT_CLIENTS):
        with monkeypatch.context() as env:
            _as_the_service_sees_it(compose, name, tmp_path / name, env)
            mqtt = load_settings().mqtt
        assert mqtt.tls, name
        assert mqtt.tls_port == 8883, name
        assert str(mqtt.ca_file) == "/run/kotaflow-mqtt-tls/ca.crt", name
        assert _mounts(compose["services"][name]).get("/run/kotaflow-mqtt-tls") == "mqtt-tls"


def test_the_public_service_publishes_https_only_with_the_public_tls_jobs_certificate(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`public` serves HTTPS itself (no proxy, so X-Forwarded-For is not trusted) on its one
    published port, with the files the public-tls job makes by `kotaflow devices tls`; run
    here into tmp_path, that job's command gives a certificate the service loads."""
    services = compose["services"]
    public, job = services["public"], services["public-tls"]
    (published,) = public["ports"]
    listen = public["command"][public["command"].index("--port") + 1]
    assert published.rsplit(":", 1)[-1] == listen == "8443"
    assert "--trust-forwarded" not in public["command"]
    assert "https://localhost:8443/" in public["healthcheck"]["test"][-1]
    for name, service in services.items():  # no plaintext HTTP of the service published
        for port in service.get("ports") or []:
            assert port.rsplit(":", 1)[-1] != "8090", name

    (script,) = job["command"]
    argv = shlex.split(script.split("&&")[0])
    assert argv[:3] == ["kotaflow", "devices", "tls"]
    folder = Path(argv[3])
    files = TlsFiles.in_folder(folder)
    assert _mounts(job)[str(folder)] == "public-tls" == _mounts(public)[str(folder)]
    assert public["depends_on"]["public-tls"]["condition"] == "service_completed_successfully"
    env = {k: str(v) for k, v in public["environment"].items()}
    assert env["KOTAFLOW_PUBLIC__TLS_CERT_FILE"] == str(files.server_cert)
    assert env["KOTAFLOW_PUBLIC__TLS_KEY_FILE"] == str(files.server_key)
    assert "chown 10001:10001" in script  # the image's kotaflow user reads its key

    from processors.public.service import PublicOptions, tls_context

    made = tmp_path / "public-tls"
    args = [
        str(made) if a == str(folder) else a.replace("$${PUBLIC_TLS_HOST}", "x.example.id")
        for a in argv[1:]
    ]
    monkeypatch.delenv("KOTAFLOW_CONFIG", raising=False)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    mine = TlsFiles.in_folder(made)
    options = PublicOptions(tls_cert_file=mine.server_cert, tls_key_file=mine.server_key)
    assert tls_context(options) is not None
