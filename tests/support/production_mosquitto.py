"""The production Mosquitto config (``deploy/mosquitto/mosquitto.conf``), started for real
with the local stack's build of the production version, the accounts ``kotaflow devices
credentials`` and the certificate ``kotaflow devices tls`` generate - as the compose file
does. Only the config's container paths and port are rewritten; every client connects over
TLS and verifies the broker.

Used by the deploy tests (accounts, ACL, TLS) and by the bridge tests that need the
production broker's behaviour (the session named after the account).
"""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.local.mosquitto import VERSION, built_binary
from kotaflow.cli import app
from kotaflow.settings import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
CREDENTIALS_DIR = "/run/kotaflow-mqtt"
TLS_DIR = "/run/kotaflow-mqtt-tls"
START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Broker:
    port: int
    passwords: dict[str, str]
    credentials: Path
    """Stands for /run/kotaflow-mqtt (the accounts)."""
    tls: Path
    """Stands for /run/kotaflow-mqtt-tls (the CA and the broker's certificate)."""

    @property
    def ca_file(self) -> Path:
        return self.tls / "ca.crt"

    def settings(self, base: Settings) -> Settings:
        """``base`` with its MQTT clients pointed at this broker (TLS, its CA, its accounts)."""
        mqtt = base.mqtt.model_copy(
            update={
                "host": "127.0.0.1",
                "tls": True,
                "tls_port": self.port,
                "ca_file": self.ca_file,
                "credentials_file": self.credentials / "credentials.json",
                "username": None,
                "password": None,
            }
        )
        return base.model_copy(update={"mqtt": mqtt})

    def env(self) -> dict[str, str]:
        """The same, for a kotaflow child process."""
        return {
            "KOTAFLOW_MQTT__HOST": "127.0.0.1",
            "KOTAFLOW_MQTT__TLS": "true",
            "KOTAFLOW_MQTT__TLS_PORT": str(self.port),
            "KOTAFLOW_MQTT__CA_FILE": str(self.ca_file),
            "KOTAFLOW_MQTT__CREDENTIALS_FILE": str(self.credentials / "credentials.json"),
        }


def listener_blocks(conf: str) -> dict[str, list[str]]:
    """A Mosquitto config's settings by the ``listener`` line they follow ("" for the ones
    above the first listener); comments and blank lines left out."""
    blocks: dict[str, list[str]] = {"": []}
    current = ""
    for line in (raw.strip() for raw in conf.splitlines()):
        if line.startswith("listener "):
            current = line
            blocks[current] = []
        elif line and not line.startswith("#"):
            blocks[current].append(line)
    return blocks


@contextmanager
def production_broker(work: Path) -> Iterator[Broker]:
    """A private broker from the production config in ``work``; skips the test when the
    production version is not built yet. Stopped (SIGTERM) on exit."""
    mosquitto = built_binary(load_settings())
    if not mosquitto.is_file():
        pytest.skip(f"mosquitto {VERSION} is not built yet (kotaflow stack up builds it)")
    work.mkdir(parents=True, exist_ok=True)
    credentials = work / "credentials"
    made = CliRunner().invoke(app, ["devices", "credentials", str(credentials)])
    assert made.exit_code == 0, made.output
    credentials_json = (credentials / "credentials.json").read_text(encoding="utf-8")
    passwords = json.loads(credentials_json)["accounts"]
    tls = work / "tls"
    made = CliRunner().invoke(app, ["devices", "tls", str(tls), "--host", "mosquitto"])
    assert made.exit_code == 0, made.output
    port = _free_port()
    conf = CONF.read_text(encoding="utf-8")
    conf = conf.replace(TLS_DIR, str(tls)).replace(CREDENTIALS_DIR, str(credentials))
    conf = conf.replace("/mosquitto/data/", f"{work}/")
    conf = conf.replace("listener 8883 0.0.0.0", f"listener {port} 127.0.0.1")
    assert str(credentials) in conf
    (work / "mosquitto.conf").write_text(conf + f"\nuser {getpass.getuser()}\n", encoding="utf-8")
    log = (work / "broker.log").open("w", encoding="utf-8")
    proc = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    broker_log = (work / "broker.log").read_text(encoding="utf-8")
                    pytest.fail(f"mosquitto did not start: {broker_log}")
                time.sleep(0.1)
        yield Broker(port, passwords, credentials, tls)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
