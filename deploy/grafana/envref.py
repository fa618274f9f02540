"""Secrets by reference, and the ``$`` rules of Grafana's provisioning files.

Grafana expands ``$NAME`` / ``${NAME}`` from its environment in every value of a
provisioning file (data sources, dashboard providers, alerting) - so a literal ``$`` there
must be written ``$$`` (alert annotations are full of ``{{ $labels.device }}``). Dashboard
JSON is not expanded and is left alone.

Secrets (the InfluxDB token, a Telegram bot token) never go into a file: objects carry an
:class:`EnvRef` (or a :class:`FileRef`) instead. :func:`for_file` turns it into ``${NAME}``
(``$__file{PATH}``) for Grafana to expand; :func:`for_api` (``grafana sync``) puts in the
value from our own environment (or that file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class EnvRef:
    """A value Grafana (or ``grafana sync``) reads from the environment variable ``name``."""

    name: str
    value: str | None = None
    """Known at generation time (e.g. from the settings): used by ``for_api`` first."""


@dataclass(frozen=True, slots=True)
class FileRef:
    """A secret Grafana reads from a file on its own machine (``$__file{PATH}``)."""

    path: str


Secret = EnvRef | FileRef


class MissingSecretError(LookupError):
    """``grafana sync`` needs a secret that is neither known nor in the environment."""


def escape_dollars(text: str) -> str:
    return text.replace("$", "$$")


def for_file(value: Any) -> Any:
    """A deep copy fit for a provisioning file: ``$`` doubled, :class:`EnvRef` as ``${NAME}``."""
    if isinstance(value, EnvRef):
        return "${" + value.name + "}"
    if isinstance(value, FileRef):
        return "$__file{" + value.path + "}"
    if isinstance(value, str):
        return escape_dollars(value)
    if isinstance(value, Mapping):
        return {key: for_file(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [for_file(item) for item in value]
    return value


def for_api(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A deep copy for the HTTP API: strings as they are, :class:`EnvRef` resolved."""
    env = os.environ if environ is None else environ
    if isinstance(value, EnvRef):
        resolved = value.value if value.value is not None else env.get(value.name)
        if not resolved:
            raise MissingSecretError(f"set the environment variable {value.name}")
        return resolved
    if isinstance(value, FileRef):
        try:
            return Path(value.path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise MissingSecretError(f"cannot read {value.path}: {err}") from None
    if isinstance(value, Mapping):
        return {key: for_api(item, env) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [for_api(item, env) for item in value]
    return value


def env_refs(value: Any) -> set[str]:
    """Names of every environment variable ``value`` refers to."""
    if isinstance(value, EnvRef):
        return {value.name}
    if isinstance(value, Mapping):
        return set().union(*(env_refs(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(env_refs(item) for item in value))
    return set()
