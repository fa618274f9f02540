"""The local MQTT broker: Debian's Mosquitto, run as our own daemon on loopback.

We never use the system service: ``start`` renders ``deploy/local/mosquitto.conf`` into the
state directory (persistence, queue limits sized for a loss-free bridge session, log) and
runs ``mosquitto -c <that file>`` itself, so data and logs live with the rest of the stack
and ``down --purge`` removes them. Health is a real MQTT connect, not just an open port.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from deploy.local.installers import apt_install
from deploy.local.service import (
    Paths,
    Report,
    ServiceError,
    ServiceStatus,
    note_config_drift,
    port_open,
    read_pid,
    render_template,
    require_free_port,
    spawn,
    stop_pid,
    wait_until,
)
from kotaflow.settings import MqttSettings, Settings

CONFIG_TEMPLATE = Path(__file__).with_name("mosquitto.conf")
APT_PACKAGES = ("mosquitto", "mosquitto-clients")
START_TIMEOUT_S = 30.0


class Mosquitto:
    """Mosquitto on ``settings.mqtt.host:port``, data and log under ``<state>/mosquitto/``."""

    name = "mosquitto"

    def __init__(self, settings: Settings) -> None:
        self._mqtt = settings.mqtt
        self._paths = Paths.for_service(settings, self.name)

    @property
    def address(self) -> str:
        return f"{self._mqtt.host}:{self._mqtt.port}"

    @property
    def config_file(self) -> Path:
        return self._paths.state / "mosquitto.conf"

    def install(self, report: Report) -> None:
        if mosquitto_binary() is not None and shutil.which("mosquitto_sub") is not None:
            return
        apt_install(APT_PACKAGES, report, self._paths.cache / "apt.log")
        if mosquitto_binary() is None:
            raise ServiceError("mosquitto: apt-get finished but no mosquitto binary was found")

    def start(self, report: Report) -> None:
        running = self._pid()
        if running is not None:
            report(f"mosquitto: already running (pid {running}) on {self.address}")
            note_config_drift(self.name, self.config_file, self._config_text(), report)
            return
        require_free_port(self._mqtt.host, self._mqtt.port, self.name, "KOTAFLOW_MQTT__PORT")
        binary = mosquitto_binary()
        if binary is None:
            raise ServiceError("mosquitto: not installed; run `kotaflow stack up` to install it")
        (self._paths.state / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._config_text())
        report(f"mosquitto: starting on {self.address} (log {self._paths.log})")
        pid = spawn([binary, "-c", str(self.config_file)], self._paths)
        wait_until(
            lambda: mqtt_connects(self._mqtt),
            START_TIMEOUT_S,
            f"mosquitto on {self.address}",
            self._paths,
            pid,
        )
        report(f"mosquitto: healthy (pid {pid})")

    def stop(self, report: Report) -> None:
        if stop_pid(self._paths, expect=str(self.config_file)):
            report("mosquitto: stopped")

    def status(self) -> ServiceStatus:
        pid = self._pid()
        healthy = port_open(self._mqtt.host, self._mqtt.port) and mqtt_connects(self._mqtt)
        detail = "" if healthy else ("not running" if pid is None else "running but not answering")
        return ServiceStatus(
            name=self.name,
            healthy=healthy,
            address=self.address,
            version=mosquitto_version(),
            pid=pid,
            log=str(self._paths.log),
            detail=detail,
            extra={"config": str(self.config_file)},
        )

    def _pid(self) -> int | None:
        return read_pid(self._paths.pidfile, expect=str(self.config_file))

    def _config_text(self) -> str:
        return render_template(
            CONFIG_TEMPLATE,
            host=self._mqtt.host,
            port=self._mqtt.port,
            user=pwd.getpwuid(os.geteuid()).pw_name,
            data_dir=self._paths.state / "data",
            log_file=self._paths.log,
        )


def mosquitto_binary() -> str | None:
    """Debian installs the broker in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def mosquitto_version() -> str | None:
    """``mosquitto -h`` prints ``mosquitto version 2.0.11`` first (and exits non-zero)."""
    binary = mosquitto_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "-h"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"mosquitto version (\S+)", out)
    return found.group(1) if found else None


def mqtt_connects(settings: MqttSettings, timeout: float = 3.0) -> bool:
    """True if the broker accepts an MQTT 5 connection (CONNACK with success) in time."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"kotaflow-health-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    outcome: list[bool] = []

    def on_connect(
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        outcome.append(not reason.is_failure)

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=10)
        deadline = time.monotonic() + timeout
        while not outcome and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except (OSError, ValueError):
        return False
    finally:
        client.disconnect()  # sends DISCONNECT (if connected) and closes the socket
    return bool(outcome and outcome[0])
