"""Keeping a benchmark's data to itself on the shared local stack.

Kafka topics and consumer groups come from :func:`tests.support.isolated_kafka.isolated`,
scratch InfluxDB buckets from :func:`tests.support.scratch_influx.scratch_buckets`
(re-exported here, shared with the tests), so a benchmark's points never mix with anyone's
``telemetry``/``rollups`` and queries on them see only its own. This adds writing settings
to a YAML file for the ``kotaflow`` child processes a scenario starts. MQTT sessions are wiped
with :func:`kotaflow.mqtt.wipe_mqtt_session` (re-exported here for the scenarios).
"""

from __future__ import annotations

import os
from datetime import time as dt_time
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from kotaflow.mqtt import MqttAccess
from kotaflow.mqtt import wipe_mqtt_session as wipe_mqtt_session  # the scenarios' import
from kotaflow.secretfiles import write_private
from kotaflow.settings import Settings
from tests.support.scratch_influx import scratch_buckets as scratch_buckets  # scenarios' import


def mosquitto_cli_env(access: MqttAccess, folder: Path) -> dict[str, str]:
    """An environment in which ``mosquitto_pub``/``mosquitto_sub`` connect with ``access``.

    Their options file (``$XDG_CONFIG_HOME/mosquitto_pub`` and ``..._sub``, mode 0600)
    holds broker, login and TLS, so no password appears on a command line."""
    options = ["-h", access.host, "-p", str(access.port)]
    if access.login is not None:
        options += ["-u", access.login.username]
        if access.login.password is not None:
            options += ["-P", access.login.password.get_secret_value()]
    if access.tls and access.ca_file is not None:
        options += ["--cafile", str(access.ca_file)]
    elif access.tls:
        options += ["--capath", "/etc/ssl/certs"]
    text = "".join(
        f"{name} {value}\n" for name, value in zip(options[::2], options[1::2], strict=True)
    )
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        write_private(folder / tool, text)
    return {**os.environ, "XDG_CONFIG_HOME": str(folder)}


def write_config(settings: Settings, path: Path) -> Path:
    """Write ``settings`` as a YAML config file (secrets included, so mode 0600)."""
    path.write_text(yaml.safe_dump(_plain(settings.model_dump(mode="python"))), encoding="utf-8")
    path.chmod(0o600)
    return path


def child_env(config: Path) -> dict[str, str]:
    """The environment for a ``kotaflow`` child: this one, minus ``KOTAFLOW_*`` overrides
    (the config file already holds the final settings), plus ``KOTAFLOW_CONFIG``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOTAFLOW_")}
    return {**env, "KOTAFLOW_CONFIG": str(config)}


def _plain(value: Any) -> Any:
    """A ``model_dump(mode="python")`` value as plain YAML data, secrets revealed."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):  # alert routes' durations: read back as seconds
        return value.total_seconds()
    if isinstance(value, dt_time):  # quiet hours: read back from "HH:MM:SS"
        return value.isoformat()
    return value
