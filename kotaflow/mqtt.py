"""How every kotaflow MQTT client reaches the broker: address, TLS and the account it uses.

The bridge, the simulator, the local stack's health check, the alert end-to-end tool, the
tests and the benchmarks all make paho clients. They take address, login and TLS from
:func:`mqtt_access`, so one set of rules holds for all of them:

* **Accounts.** Every kotaflow part has its own broker account (:class:`Account`; the
  value is the user name) and every device logs in as its registry id, so the broker's
  ACL can give each only what it needs. A process whose settings name ``mqtt.username``
  uses that one account for every client (production: one service per process, its
  password from ``KOTAFLOW_MQTT__PASSWORD``). Otherwise each account's password is read
  from ``mqtt.credentials_file``, else from the local stack's generated
  ``<state>/mosquitto/credentials.json`` (see ``kotaflow devices credentials``). With
  neither, the client connects anonymously, which a kotaflow-configured broker refuses.
* **TLS.** ``mqtt.tls`` connects to ``mqtt.tls_port`` and verifies the broker's
  certificate and host name against ``mqtt.ca_file``, else the local stack's CA
  (``<state>/tls/ca.crt``) when there is one, else the system's trust store.

Passwords read here are registered with the log redaction (``kotaflow.logs.redact``).

:func:`wipe_mqtt_session` ends a persistent session that a test, a benchmark or a tool made
(a bridge's fixed client id): left behind, the broker queues messages for it and keeps it in
its persistence file (Debian's Mosquitto 2.0.11 once crashed expiring such a restored one).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from kotaflow.logs import redact
from kotaflow.settings import Settings

CREDENTIALS_VERSION = 1
WIPE_TIMEOUT_S = 10.0

log = logging.getLogger("kotaflow.mqtt")


class Account(StrEnum):
    """kotaflow's own broker accounts (devices log in as their registry id)."""

    BRIDGE = "kotaflow-bridge"
    """Reads every device topic (plain subscriptions, one session per broker) and writes
    only its own ``kotaflow-bridge/#`` (the backlog marker, ingest/mqtt.py)."""
    HEALTH = "kotaflow-health"
    """Only connects: the local stack's health check."""
    GATEWAY = "kotaflow-gateway"
    """Publishes on every device topic: field gateways, tests and benchmarks."""
    CHIRPSTACK = "kotaflow-chirpstack"
    """ChirpStack's MQTT integration: publishes its ``application/...`` tree."""
    TTS = "kotaflow-tts"
    """The Things Stack's MQTT integration: publishes its ``v3/...`` tree."""


class MqttAccessError(RuntimeError):
    """No usable credentials for an account; the message says where they were looked for."""


@dataclass(frozen=True, slots=True)
class MqttLogin:
    username: str
    password: SecretStr | None


@dataclass(frozen=True, slots=True)
class MqttAccess:
    """Everything a client needs to connect: where, over what, and as whom."""

    host: str
    port: int
    keepalive_s: int
    tls: bool = False
    ca_file: Path | None = None
    """None with ``tls``: the system's trust store."""
    login: MqttLogin | None = None
    """None: connect anonymously."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def username(self) -> str | None:
        return self.login.username if self.login else None

    def as_login(self, login: MqttLogin | None) -> MqttAccess:
        return replace(self, login=login)

    def client(self, client_id: str, **options: Any) -> paho.Client:
        """A paho MQTT 5 client (callback API 2) with this access applied; not yet connected
        (``client.connect(access.host, access.port)``)."""
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, **options
        )
        self.apply(client)
        return client

    def apply(self, client: paho.Client) -> None:
        """Set the login and TLS on a paho client before it connects."""
        if self.login is not None:
            password = self.login.password
            client.username_pw_set(
                self.login.username, password.get_secret_value() if password else None
            )
        if self.tls:
            client.tls_set_context(self.tls_context())

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the broker's certificate chain and host name (TLS 1.2 at least)."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def local_credentials_file(state_dir: Path) -> Path:
    """Where the local stack keeps the generated account passwords."""
    return state_dir / "mosquitto" / "credentials.json"


def local_ca_file(state_dir: Path) -> Path:
    """The local stack's CA certificate (``deploy/local/tls.py`` makes it)."""
    return state_dir / "tls" / "ca.crt"


def mqtt_access(settings: Settings, account: Account | str) -> MqttAccess:
    """How to connect as ``account`` (an :class:`Account` or a device id); see the module."""
    mqtt = settings.mqtt
    ca_file = mqtt.ca_file
    if mqtt.tls and ca_file is None and local_ca_file(settings.stack.state_dir).is_file():
        ca_file = local_ca_file(settings.stack.state_dir)
    return MqttAccess(
        host=mqtt.host,
        port=mqtt.tls_port if mqtt.tls else mqtt.port,
        keepalive_s=mqtt.keepalive_s,
        tls=mqtt.tls,
        ca_file=ca_file,
        login=login_for(settings, account),
    )


def edge_local_access(
    settings: Settings, host: str | None = None, port: int | None = None
) -> MqttAccess:
    """An edge gateway's own broker (``edge.local_*``; ``host``/``port`` override them):
    plain MQTT, on loopback by default, with a login if ``edge.local_username`` is set. The
    edge reads its devices there; ``kotaflow simulate --behind-edge`` publishes there."""
    edge = settings.edge
    login = MqttLogin(edge.local_username, edge.local_password) if edge.local_username else None
    return MqttAccess(
        host or edge.local_host,
        port or edge.local_port,
        settings.mqtt.keepalive_s,
        tls=False,
        login=login,
    )


def login_for(settings: Settings, account: Account | str) -> MqttLogin | None:
    """``mqtt.username`` if set, else ``account`` from the credentials file, else None."""
    mqtt = settings.mqtt
    if mqtt.username is not None:
        return MqttLogin(mqtt.username, mqtt.password)
    path = mqtt.credentials_file or local_credentials_file(settings.stack.state_dir)
    if mqtt.credentials_file is None and not path.is_file():
        return None
    passwords = read_credentials(path)
    name = str(account)
    if name not in passwords:
        raise MqttAccessError(
            f"no MQTT account {name!r} in {path}: a device needs to be in the registry, then "
            "`kotaflow stack up` (local stack) or `kotaflow devices credentials` regenerates it"
        )
    redact(passwords[name])
    return MqttLogin(name, passwords[name])


def read_credentials(path: Path) -> dict[str, SecretStr]:
    """User name -> password, from a file :func:`credentials_json` wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CREDENTIALS_VERSION:
            raise ValueError(f"expected version {CREDENTIALS_VERSION}")
        return {str(user): SecretStr(str(pw)) for user, pw in data["accounts"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise MqttAccessError(f"cannot read MQTT credentials file {path}: {err}") from None


def credentials_json(passwords: Mapping[str, str]) -> str:
    """The credentials file's text: ``{"version": 1, "accounts": {user: password}}``."""
    accounts = dict(sorted(passwords.items()))
    return json.dumps({"version": CREDENTIALS_VERSION, "accounts": accounts}, indent=2) + "\n"


def wipe_mqtt_session(
    settings: Settings,
    client_id: str,
    account: Account | str = Account.BRIDGE,
    timeout_s: float = WIPE_TIMEOUT_S,
) -> bool:
    """End ``client_id``'s persistent session on the broker, so nothing queues for it.

    Connects with that client id, a clean start and session expiry 0 (the broker drops the
    old session and keeps none after this connection), waits for the CONNACK and
    disconnects. For clean-ups: it never raises; a broker that cannot be reached or refuses
    the login is logged as a warning and gives False."""
    access = mqtt_access(settings, account)
    client = access.client(client_id)
    answered = threading.Event()
    accepted: list[bool] = []

    def on_connect(
        _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        accepted.append(not reason.is_failure)
        answered.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    try:
        client.connect(access.host, access.port, clean_start=True, properties=props)
    except (OSError, ValueError) as err:
        log.warning("could not wipe MQTT session %r: %s", client_id, err)
        return False
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            log.warning("could not wipe MQTT session %r: no CONNACK in %g s", client_id, timeout_s)
            return False
        if not accepted[0]:
            log.warning("could not wipe MQTT session %r: the broker refused the login", client_id)
        return accepted[0]
    finally:
        client.disconnect()
        client.loop_stop()
