"""The local MQTT broker: Mosquitto 2.0.21, built once, run as our own daemon on loopback.

Bookworm's Mosquitto 2.0.11 crashed expiring a session restored from its persistence file,
so :meth:`Mosquitto.install` builds :data:`VERSION` from Debian trixie's source package
(``build_mosquitto.sh``: broker and the ``mosquitto_pub``/``_sub``/``_passwd`` clients) and
caches it under ``<cache>/mosquitto/<version>/``, like InfluxDB. We never use a system
service: ``start`` renders ``deploy/local/mosquitto.conf`` into the state directory
(persistence, queue limits sized for a loss-free bridge session, log) and runs
``mosquitto -c <that file>`` itself, so data and logs live with the rest of the stack and
``down --purge`` removes them. Sessions and their queues persist across broker restarts.
Health is a real MQTT connect (as ``kotaflow-health``), not just an open port.

Security: no anonymous access. Every ``up`` regenerates the accounts, password hashes and
ACL from the device registry into ``<state>/mosquitto/`` (``devices/credentials.py``; kept
passwords stay) and sends a running broker SIGHUP when they changed, so a new device can
publish without a restart. A TLS listener (``mqtt.tls_port``) presents a certificate from
the stack's own CA (``deploy/local/tls.py``); the plain listener stays on loopback.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from deploy.local.installers import run_logged
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
from deploy.local.tls import TlsFiles, ensure_tls
from devices.credentials import (
    ACL_FILE,
    PASSWD_FILE,
    CredentialsError,
    CredentialsReport,
    describe,
    write_broker_files,
)
from devices.fleet import load_fleet
from devices.registry import Registry
from devices.sourcefile import DeviceFileError
from kotaflow.mqtt import (
    Account,
    MqttAccess,
    MqttAccessError,
    MqttLogin,
    local_credentials_file,
    read_credentials,
)
from kotaflow.settings import Settings

CONFIG_TEMPLATE = Path(__file__).with_name("mosquitto.conf")
BUILD_SCRIPT = Path(__file__).with_name("build_mosquitto.sh")
VERSION = "2.0.21"
"""Debian trixie's Mosquitto; deploy/compose.yaml pins the same eclipse-mosquitto tag."""
COLD_BUILD_ESTIMATE = "about 15 s on 2 cores, plus any missing build packages"
CLIENT_TOOLS = ("mosquitto_pub", "mosquitto_sub", "mosquitto_passwd")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 120.0
"""A graceful stop writes every queued message to the persistence file: give it time."""


class Mosquitto:
    """Mosquitto on ``settings.mqtt.host:port``, data and log under ``<state>/mosquitto/``."""

    name = "mosquitto"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._mqtt = settings.mqtt
        self._paths = Paths.for_service(settings, self.name)
        self._tls = TlsFiles.of(settings.stack.state_dir)

    @property
    def address(self) -> str:
        return f"{self._mqtt.host}:{self._mqtt.port}"

    @property
    def tls_address(self) -> str:
        return f"{self._mqtt.host}:{self._mqtt.tls_port}"

    @property
    def config_file(self) -> Path:
        return self._paths.state / "mosquitto.conf"

    @property
    def credentials_file(self) -> Path:
        """The generated account passwords (0600); clients find it through the settings."""
        return local_credentials_file(self._settings.stack.state_dir)

    def install(self, report: Report) -> None:
        binary = built_binary(self._settings)
        if binary.is_file():
            return
        out = binary.parent.parent
        log = out / "build.log"
        report(
            f"mosquitto: {VERSION} is not built yet. Building it from Debian trixie's source "
            f"package, once per machine ({COLD_BUILD_ESTIMATE}). Cached in {out}. "
            f"Full log: {log}"
        )
        run_logged(
            ["bash", str(BUILD_SCRIPT), "--version", VERSION, "--out", str(out)],
            log,
            report,
            what=f"building mosquitto {VERSION}",
            progress=_build_progress,
        )
        if not binary.is_file():
            raise ServiceError(f"mosquitto: build finished without {binary}; log {log}")

    def start(self, report: Report) -> None:
        running = self._pid()
        if running is not None:
            report(f"mosquitto: already running (pid {running}) on {self.address}")
            self.reload_accounts(report)
            note_config_drift(self.name, self.config_file, self._config_text(), report)
            self._note_binary_drift(running, report)
            return
        require_free_port(self._mqtt.host, self._mqtt.port, self.name, "KOTAFLOW_MQTT__PORT")
        require_free_port(
            self._mqtt.host, self._mqtt.tls_port, f"{self.name} TLS", "KOTAFLOW_MQTT__TLS_PORT"
        )
        binary = built_binary(self._settings)
        if not binary.is_file():
            raise ServiceError("mosquitto: not built yet; run `kotaflow stack up` to build it")
        (self._paths.state / "data").mkdir(parents=True, exist_ok=True)
        accounts = self._write_accounts()
        if accounts.added:
            report(f"mosquitto: accounts in {self.credentials_file} ({describe(accounts)})")
        ensure_tls(self._settings.stack.state_dir, [self._mqtt.host], report)
        self.config_file.write_text(self._config_text(), encoding="utf-8")
        report(
            f"mosquitto: starting on {self.address}, TLS on {self.tls_address} "
            f"(log {self._paths.log})"
        )
        pid = spawn([str(binary), "-c", str(self.config_file)], self._paths)
        wait_until(
            lambda: mqtt_connects(self._health_access()),
            START_TIMEOUT_S,
            f"mosquitto on {self.address}",
            self._paths,
            pid,
        )
        report(f"mosquitto: healthy (pid {pid})")

    def stop(self, report: Report) -> None:
        if stop_pid(self._paths, STOP_TIMEOUT_S, expect=str(self.config_file)):
            report("mosquitto: stopped")

    def status(self) -> ServiceStatus:
        pid = self._pid()
        healthy = port_open(self._mqtt.host, self._mqtt.port) and mqtt_connects(
            self._health_access()
        )
        detail = "" if healthy else ("not running" if pid is None else "running but not answering")
        return ServiceStatus(
            name=self.name,
            healthy=healthy,
            address=self.address,
            version=mosquitto_version(running_binary(pid) if pid else built_binary(self._settings)),
            pid=pid,
            log=str(self._paths.log),
            detail=detail,
            extra={
                "config": str(self.config_file),
                "tls": self.tls_address,
                "tls_healthy": mqtt_connects(self._health_access(tls=True)),
                "ca_file": str(self._tls.ca_cert),
                "credentials_file": str(self.credentials_file),
                "acl_file": str(self._paths.state / ACL_FILE),
            },
        )

    def reload_accounts(
        self, report: Report, registry: Registry | None = None
    ) -> CredentialsReport | None:
        """Accounts and ACL from ``registry`` (default: the settings' registry file); a
        running broker reloads them (SIGHUP) when they changed. None when the broker is not
        running (``start`` writes them)."""
        running = self._pid()
        if running is None:
            return None
        accounts = self._write_accounts(registry)
        if accounts.changed and self._reads_our_accounts():
            os.kill(running, signal.SIGHUP)
            report(f"mosquitto: accounts or ACL changed ({describe(accounts)}); reloaded")
        return accounts

    def _pid(self) -> int | None:
        return read_pid(self._paths.pidfile, expect=str(self.config_file))

    def _note_binary_drift(self, pid: int, report: Report) -> None:
        """A broker started from another binary (say bookworm's 2.0.11) keeps running it."""
        running = mosquitto_version(running_binary(pid))
        if running != VERSION:
            report(
                f"mosquitto: the running broker is {running or 'of unknown version'}, not "
                f"{VERSION}; `kotaflow stack down && kotaflow stack up` switches it over "
                "(sessions and queued messages are kept)"
            )

    def _write_accounts(self, registry: Registry | None = None) -> CredentialsReport:
        """Accounts, password hashes and ACL from the registry, next to the config."""
        try:
            registry = registry or load_fleet(self._settings).registry
            return write_broker_files(registry, self._paths.state)
        except DeviceFileError as err:
            problems = "\n".join(str(p) for p in err.problems)
            raise ServiceError(f"mosquitto: the device registry is invalid:\n{problems}") from None
        except (CredentialsError, MqttAccessError) as err:
            raise ServiceError(f"mosquitto: {err}") from None

    def _reads_our_accounts(self) -> bool:
        """The running broker's config names our password file (an older one may not)."""
        try:
            return str(self._paths.state / PASSWD_FILE) in self.config_file.read_text(
                encoding="utf-8"
            )
        except OSError:
            return False

    def _health_access(self, tls: bool = False) -> MqttAccess:
        """The health account from the stack's own file, on the plain or the TLS listener
        (verified against the stack's CA)."""
        login = None
        if self.credentials_file.is_file():
            passwords = read_credentials(self.credentials_file)
            login = MqttLogin(Account.HEALTH, passwords.get(Account.HEALTH))
        port = self._mqtt.tls_port if tls else self._mqtt.port
        ca_file = self._tls.ca_cert if tls else None
        return MqttAccess(self._mqtt.host, port, 10, tls=tls, ca_file=ca_file, login=login)

    def _config_text(self) -> str:
        return render_template(
            CONFIG_TEMPLATE,
            host=self._mqtt.host,
            port=self._mqtt.port,
            tls_port=self._mqtt.tls_port,
            user=pwd.getpwuid(os.geteuid()).pw_name,
            data_dir=self._paths.state / "data",
            log_file=self._paths.log,
            passwd_file=self._paths.state / PASSWD_FILE,
            acl_file=self._paths.state / ACL_FILE,
            ca_file=self._tls.ca_cert,
            cert_file=self._tls.server_cert,
            key_file=self._tls.server_key,
            message_size_limit=self._settings.bridge.max_payload_bytes,
        )


def built_binary(settings: Settings) -> Path:
    """Where ``build_mosquitto.sh`` leaves the broker: ``<cache>/mosquitto/<version>/sbin``."""
    return settings.stack.cache_dir / "mosquitto" / VERSION / "sbin" / "mosquitto"


def mosquitto_tool(settings: Settings, name: str) -> str | None:
    """A client tool (:data:`CLIENT_TOOLS`) of the built version, else one on ``PATH``."""
    built = built_binary(settings).parent.parent / "bin" / name
    return str(built) if built.is_file() else shutil.which(name)


def running_binary(pid: int) -> Path:
    """The executable of a running process (still runnable if replaced on disk since)."""
    return Path(f"/proc/{pid}/exe")


def mosquitto_version(binary: Path) -> str | None:
    """``mosquitto -h`` prints ``mosquitto version 2.0.21`` first (and exits non-zero)."""
    try:
        out = subprocess.run(
            [str(binary), "-h"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"mosquitto version (\S+)", out)
    return found.group(1) if found else None


def _build_progress(line: str) -> str | None:
    """The build script marks its steps with ``==>``; the rest goes to the log."""
    return f"mosquitto build: {line[4:]}" if line.startswith("==>") else None


def mqtt_connects(access: MqttAccess, timeout: float = 3.0) -> bool:
    """True if the broker accepts an MQTT 5 connection (CONNACK with success) in time."""
    try:
        client = access.client(f"kotaflow-health-{uuid.uuid4().hex[:12]}")
    except OSError:  # e.g. the CA file is not there yet: not healthy, not a crash
        return False
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
        client.connect(access.host, access.port, keepalive=10)
        deadline = time.monotonic() + timeout
        while not outcome and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except (OSError, ValueError):
        return False
    finally:
        client.disconnect()  # sends DISCONNECT (if connected) and closes the socket
    return bool(outcome and outcome[0])
