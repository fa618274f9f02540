"""How every kotaflow Kafka client connects: listener, TLS and SASL login (aiokafka options).

The stages, the bridge, the alerting and the local stack's tools build their aiokafka
clients with :func:`client_options`, so security is configured once:

* ``kafka.security_protocol``: ``PLAINTEXT`` (the local stack's loopback listener, the
  default), ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (production: SCRAM over TLS).
* TLS verifies the brokers' certificates and host names against ``kafka.ca_file``, else the
  local stack's CA (``<state>/tls/ca.crt``) when there is one, else the system trust store.
* SASL (``kafka.sasl_mechanism``, e.g. ``SCRAM-SHA-512``) logs in as ``kafka.sasl_username``
  (default :data:`LOCAL_SCRAM_USER`) with ``kafka.sasl_password`` (environment), else the
  content of ``kafka.sasl_password_file``, else the local stack's generated password file.

Passwords read here are registered with the log redaction (``kotaflow.logs.redact``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from kotaflow.logs import redact
from kotaflow.settings import Settings

LOCAL_SCRAM_USER = "kotaflow"
"""The SCRAM user the local stack creates (``deploy/local/kafka.py``)."""


class KafkaAccessError(RuntimeError):
    """SASL is on but no password can be found; the message says where it was looked for."""


def local_sasl_password_file(state_dir: Path) -> Path:
    """The local stack's generated SCRAM password (0600)."""
    return state_dir / "kafka" / "sasl.password"


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    kafka = settings.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(settings)
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username or LOCAL_SCRAM_USER
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the brokers' chain and host names (TLS 1.2 at least)."""
    from kotaflow.mqtt import local_ca_file  # (not at import: it loads paho, ~30 ms)

    ca_file = settings.kafka.ca_file
    local = local_ca_file(settings.stack.state_dir)
    if ca_file is None and local.is_file():
        ca_file = local
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def sasl_password(settings: Settings) -> str:
    """``kafka.sasl_password``, else ``kafka.sasl_password_file``, else the local stack's."""
    kafka = settings.kafka
    if kafka.sasl_password is not None:
        return kafka.sasl_password.get_secret_value()
    path = kafka.sasl_password_file or local_sasl_password_file(settings.stack.state_dir)
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise KafkaAccessError(
            f"kafka.sasl_mechanism is set but there is no password: set kafka.sasl_password "
            f"(KOTAFLOW_KAFKA__SASL_PASSWORD) or kafka.sasl_password_file ({path}: {err})"
        ) from None
    if not password:
        raise KafkaAccessError(f"Kafka SASL password file {path} is empty")
    redact(password)
    return password


MAX_MESSAGE_BYTES = "max.message.bytes"


async def topic_max_message_bytes(options: dict[str, Any], topics: list[str]) -> dict[str, int]:
    """Each existing topic's ``max.message.bytes`` (missing topics are left out): what the
    broker accepts as one record batch there. ``options``: aiokafka client options."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {MAX_MESSAGE_BYTES: None}) for t in topics]
        )
    finally:
        await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for error, _, _, name, entries in response.resources:
            for key, value, *_ in entries if error == 0 else ():
                if key == MAX_MESSAGE_BYTES and value is not None:
                    found[name] = int(value)
    return found
