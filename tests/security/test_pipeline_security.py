"""The pipeline as production runs it, against the local stack: bridge, process and
simulate as processes, MQTT over TLS with one account per part and per device, Kafka over
SASL_SSL with SCRAM. Nothing in the settings but the switches: every credential and the
CA come from the stack's state directory.

Pinned: a device naming another device in its payload is dead-lettered ``device_mismatch``
end to end; one publishing on another device's topic is refused by the broker and nothing
reaches Kafka; and after a full run no log line, no ``stack status`` output and no part
of the services' logs holds any configured secret.

The module's processes are shared by its tests (started once); the last test stops them
to read their shutdown logs too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from paho.mqtt.reasoncodes import ReasonCode

from deploy.local.influxdb import load_access
from deploy.local.kafka import SASL_PORT_OFFSET, broker_address
from deploy.local.tls import TlsFiles
from devices.fleet import load_fleet
from kotaflow.kafka import local_sasl_password_file
from kotaflow.mqtt import (
    Account,
    local_credentials_file,
    mqtt_access,
    read_credentials,
    wipe_mqtt_session,
)
from kotaflow.secretfiles import write_private
from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter
from tests.conftest import ScratchLedger
from tests.processors.helpers import read_topic
from tests.support.isolated_kafka import isolated, isolation_env, stage_topics

pytestmark = pytest.mark.services

DEADLINE_S = 90.0
PARTITIONS = 3
SERVICES = ("mosquitto", "kafka", "influxdb")
NOT_AUTHORIZED = 0x87
ACCEPTED = {0x00, 0x10}
"""PUBACK success, and success with "no matching subscribers"."""
SIMULATE = ("--rate", "300", "--duration", "4", "--json", "--seed", "3")


@dataclass
class SecureRun:
    """This module's pipeline: its isolated settings, processes, logs and environment."""

    plain: Settings
    """Same topics and groups, on the plain listeners: how the test itself reads Kafka."""
    secure: Settings
    """What the processes run with: MQTT over TLS, Kafka over SASL_SSL."""
    env: dict[str, str]
    log_dir: Path
    service_logs: dict[Path, int] = field(default_factory=dict)
    """Each service log and its size when the run started (only what follows is read)."""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kotaflow", *argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace", encoding="utf-8")

    def wait_log(self, name: str, text: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while text not in self.log(name):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} never logged {text!r}:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, sources first, and wait: the shutdown logs are part of the run."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _secure_env(settings: Settings, tag: str, token_file: Path) -> dict[str, str]:
    """Isolated topics, groups and scratch buckets (their token from a file, as in
    production), MQTT over TLS and Kafka over SASL_SSL."""
    host, port = broker_address(settings.kafka)
    return {
        **os.environ,
        **isolation_env(settings),
        "KOTAFLOW_PROCESSING__INFLUX_TOKEN_FILE": str(token_file),
        "KOTAFLOW_LOG_LEVEL": "DEBUG",
        "KOTAFLOW_MQTT__TLS": "true",
        "KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS": f"{host}:{port + SASL_PORT_OFFSET}",
        "KOTAFLOW_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "KOTAFLOW_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "KOTAFLOW_PROCESSING__VALIDATION__FLUSH_INTERVAL_S": "0.2",
        "KOTAFLOW_PROCESSING__STORE__FLUSH_INTERVAL_S": "0.5",
        "KOTAFLOW_PROCESSING__HEALTH__INTERVAL_S": "1",
        "KOTAFLOW_BRIDGE__CLIENT_ID": f"sec-bridge-{tag}",
        "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "60",
        "KOTAFLOW_BRIDGE__METRICS_PORT": "0",
        "KOTAFLOW_METRICS_PORT": "0",
    }


@pytest.fixture(scope="module")
def run(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory, scratch_ledger: ScratchLedger
) -> Iterator[SecureRun]:
    tag = uuid.uuid4().hex[:8]
    plain = scratch_ledger.scratch(isolated(stack, tag, prefix="sec"), f"sec{tag}")
    assert plain.influxdb.token is not None
    log_dir = tmp_path_factory.mktemp("secure-run")
    token_file = log_dir / "influx.token"
    write_private(token_file, plain.influxdb.token.get_secret_value())
    without_token = plain.influxdb.model_copy(update={"token": None})
    plain = plain.model_copy(update={"influxdb": without_token})
    secure = plain.model_copy(update={"mqtt": plain.mqtt.model_copy(update={"tls": True})})
    state = stack.stack.state_dir
    logs = [state / name / "log" / "service.log" for name in SERVICES]
    sec = SecureRun(
        plain=plain,
        secure=secure,
        env=_secure_env(plain, tag, token_file),
        log_dir=log_dir,
        service_logs={path: path.stat().st_size for path in logs if path.exists()},
    )
    asyncio.run(stage_topics(plain, create=True, partitions=PARTITIONS))
    try:
        sec.spawn("process", "process", "--stage", "validate", "--stage", "store")
        sec.spawn("bridge", "bridge")
        sec.wait_log("bridge", "MQTT subscribed")
        sec.wait_log("process", "stage started")
        yield sec
    finally:
        sec.stop()
        wipe_mqtt_session(plain, sec.env["KOTAFLOW_BRIDGE__CLIENT_ID"])  # the bridge's session
        asyncio.run(stage_topics(plain, create=False))
        scratch_ledger.drop(stack, f"sec{tag}")


# -- reading what the pipeline wrote ---------------------------------------------------------


async def _read(
    settings: Settings, topic: str, done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from its start, once ``done(records)``; fails at the deadline."""
    records = await read_topic(settings, topic, done, DEADLINE_S)
    assert done(records), f"{topic}: {len(records)} records, not what was expected"
    return records


# -- a device as the broker sees it ----------------------------------------------------------


class Device:
    """Publishes over TLS as one account and reports each PUBACK's reason code."""

    def __init__(self, settings: Settings, account: str) -> None:
        self.access = mqtt_access(settings, account)
        self.pubacks: queue.Queue[int] = queue.Queue()
        self.client = self.access.client(f"sec-{account}-{uuid.uuid4().hex[:6]}")
        self.client.on_publish = lambda _c, _u, _m, rc, _p: self.pubacks.put(_code(rc))

    def __enter__(self) -> Device:
        self.client.connect(self.access.host, self.access.port)
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> int:
        self.client.publish(topic, payload, qos=1)
        return self.pubacks.get(timeout=DEADLINE_S)


def _code(value: object) -> int:
    return int(value.value) if isinstance(value, ReasonCode) else int(str(value))


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode()
    return None


def _two_devices(settings: Settings) -> tuple[str, str]:
    plain = [d for d in load_fleet(settings).registry if d.enabled and not d.dev_eui]
    return plain[0].id, plain[1].id


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_device_naming_another_in_its_payload_is_dead_lettered_device_mismatch(
    run: SecureRun,
) -> None:
    a, b = _two_devices(run.secure)
    lorawan = next(d for d in load_fleet(run.secure).registry if d.enabled and d.dev_eui)
    nonce = uuid.uuid4().int % 10_000 / 100
    senml = json.dumps([{"n": f"{b}/temperature", "v": nonce, "u": "Cel"}]).encode()
    uplink = json.dumps(
        {
            "deduplicationId": str(uuid.uuid4()),
            "time": "2026-01-01T00:00:00Z",
            "deviceInfo": {"devEui": "00000000000000ff", "deviceName": "x"},
            "object": {"temperature": nonce},
        }
    ).encode()
    with Device(run.secure, a) as device:
        assert device.publish(f"kotaflow/{a}/senml", senml) in ACCEPTED  # its own topic
    with Device(run.secure, Account.CHIRPSTACK) as network_server:
        topic = f"application/manggarai/device/{lorawan.dev_eui}/event/up"
        assert network_server.publish(topic, uplink) in ACCEPTED
    ours = {senml, uplink}
    dead_topic = run.plain.kafka.topics.deadletter
    records = await _read(
        run.plain,
        dead_topic,
        lambda got: ours <= {DeadLetter.from_value(r.value).payload for r in got},
    )
    letters = [DeadLetter.from_value(r.value) for r in records]
    mine = [d for d in letters if d.payload in ours]
    assert {d.reason.value for d in mine} == {"device_mismatch"}
    assert {d.stage for d in mine} == {"validate"}


@pytest.mark.asyncio
async def test_a_device_publishing_on_another_devices_topic_is_refused_and_never_reaches_kafka(
    run: SecureRun,
) -> None:
    a, b = _two_devices(run.secure)
    forged = json.dumps({"pm25": 1, "nonce": uuid.uuid4().hex}).encode()
    marker = json.dumps({"pm25": 2, "nonce": uuid.uuid4().hex}).encode()
    with Device(run.secure, a) as device:
        assert device.publish(f"kotaflow/{b}/telemetry", forged) == NOT_AUTHORIZED
        assert device.publish(f"kotaflow/{a}/telemetry", marker) in ACCEPTED
    raw_topic = run.plain.kafka.topics.raw
    records = await _read(run.plain, raw_topic, lambda got: any(r.value == marker for r in got))
    # Same connection, so the broker handled the forged message first: it would be here.
    assert not [r for r in records if r.value == forged]
    assert [_header(r, "kf.topic") for r in records if r.value == marker] == [
        f"kotaflow/{a}/telemetry"
    ]


def _secrets(state: Path) -> dict[str, str]:
    """Every secret the stack configured, by where it comes from."""
    found = {
        f"mqtt:{user}": pw.get_secret_value()
        for user, pw in read_credentials(local_credentials_file(state)).items()
    }
    found["kafka:sasl"] = local_sasl_password_file(state).read_text(encoding="utf-8").strip()
    access = load_access(state)
    assert access is not None
    found.update({f"influxdb:{role}": token for role, token in access.tokens.items()})
    found["influxdb:admin"] = access.admin_password
    tls = TlsFiles.of(state)
    for key in (tls.ca_key, tls.server_key):
        body = "".join(key.read_text(encoding="utf-8").splitlines()[1:-1])
        found[f"key:{key.name}"] = body[8:48]  # a slice of the key material itself
    return found


def test_a_full_run_leaves_no_secret_in_any_log_or_status(run: SecureRun) -> None:
    summary_out = subprocess.run(
        [sys.executable, "-m", "kotaflow", "simulate", *SIMULATE],
        env=run.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert summary_out.returncode == 0, summary_out.stderr.decode()[-3000:]
    summary = json.loads(summary_out.stdout)
    assert summary["acked"] == summary["messages"] > 0
    asyncio.run(_wait_for_run(run, summary["run_id"], summary["messages"]))
    status = [
        subprocess.run(
            [sys.executable, "-m", "kotaflow", "stack", "status", *extra],
            env=run.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        for extra in (["--json"], [])
    ]
    services = {s["name"]: s for s in json.loads(status[0].stdout)["services"]}
    assert all(s["healthy"] for s in services.values()), services
    assert services["kafka"]["extra"]["sasl_healthy"] is True
    assert services["mosquitto"]["extra"]["tls_healthy"] is True
    run.stop()

    texts = {
        "simulate stdout": summary_out.stdout.decode(),
        "simulate stderr": summary_out.stderr.decode(),
        **{
            f"stack status {i}": s.stdout.decode() + s.stderr.decode() for i, s in enumerate(status)
        },
        **{f"{name} log": run.log(name) for name in run.procs},
        **{str(path): _since(path, offset) for path, offset in run.service_logs.items()},
    }
    secrets = _secrets(run.secure.stack.state_dir)
    assert len(secrets) > 45
    leaks = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, text in texts.items()
        if secret in text or base64.b64encode(secret.encode()).decode() in text
    ]
    assert not leaks
    assert not [where for where, text in texts.items() if "PRIVATE KEY" in text]
    for name in run.procs:  # the run itself went well: no error logged
        assert '"level": "error"' not in run.log(name), run.log(name)[-3000:]


async def _wait_for_run(run: SecureRun, run_id: str, messages: int) -> None:
    """Until every simulated message is in the raw topic and readings came out of validate."""
    raw, readings = run.plain.kafka.topics.raw, run.plain.kafka.topics.readings

    def all_of_run(got: list[ConsumerRecord[bytes, bytes]]) -> bool:
        traced = (_header(r, "kf.up.kf-sim") or "" for r in got)
        return sum(1 for t in traced if t.startswith(f"{run_id}/")) >= messages

    await _read(run.plain, raw, all_of_run)
    await _read(run.plain, readings, bool)


def _since(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")
