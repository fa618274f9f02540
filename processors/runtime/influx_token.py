"""Where a stage's InfluxDB token comes from, read again whenever a write is refused.

A token is rotated (or revoked and re-issued) while the processors run. Reading it once at
start would keep a stage stalled on the old one for ever; :class:`TokenSource` remembers
*where* the token is (a setting, a token file, the local stack's ``tokens.json``) so the
sink can read it again on each retry after a 401/403 and resume by itself once the file
holds a valid token. :meth:`TokenSource.where` names that place for error messages; the
token itself never appears in a message (and is masked in the logs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotaflow.logs import redact
from kotaflow.settings import Settings


class InfluxConfigError(RuntimeError):
    """No usable InfluxDB token: the message says where one was looked for."""


WRITE_ROLE, READ_ROLE = "pipeline", "grafana"
"""The local stack's shared tokens (``deploy/local/influxdb.py``): ``pipeline`` may write
both buckets, ``grafana`` read them. What a client without a role of its own uses, and what
each role falls back to on a stack set up before the per-stage tokens."""
STORE_ROLE, AGGREGATE_ROLE, ALERT_ROLE, HEALTH_ROLE = "store", "aggregate", "alert", "health"
PUBLIC_ROLE = "public"
"""``kotaflow public``'s read-only token (falls back to ``grafana``'s on older stacks)."""
"""Per-stage tokens, each with the least rights InfluxDB 2.x can express: ``store`` writes
``telemetry``; ``aggregate`` writes ``rollups`` and reads both buckets (recomputing from raw
points and minute rollups); ``alert`` writes its events' bucket (``telemetry``); ``health``
writes the health figures' bucket (``rollups``)."""


@dataclass(frozen=True, slots=True)
class TokenSource:
    """The token for ``role``, from the first of:

    1. ``influxdb.token`` (one token for everything);
    2. ``processing.influx_token_file`` (the same, from a file: old configs);
    3. ``<role>.token`` in ``processing.influx_token_dir``, else the ``fallback`` role's;
    4. the local stack's token for ``role`` (else ``fallback``) in
       ``<state>/influxdb/tokens.json``."""

    settings: Settings
    role: str
    fallback: str | None = None

    @property
    def tokens_json(self) -> Path:
        return self.settings.stack.state_dir / "influxdb" / "tokens.json"

    @property
    def roles(self) -> list[str]:
        """``role``, then ``fallback``: the names looked for, in order."""
        return list(dict.fromkeys(r for r in (self.role, self.fallback) if r))

    def _token_file(self) -> Path | None:
        """The ``<role>.token`` (else fallback's) of ``processing.influx_token_dir``."""
        folder = self.settings.processing.influx_token_dir
        if folder is None:
            return None
        for name in self.roles:
            if (folder / f"{name}.token").is_file():
                return folder / f"{name}.token"
        return folder / f"{self.role}.token"

    def _json_role(self) -> str:
        """The role whose token ``tokens.json`` holds (``role`` unless only the fallback's)."""
        tokens = _tokens_json(self.tokens_json)
        return next((name for name in self.roles if tokens.get(name)), self.role)

    def where(self) -> str:
        """The token's role and the setting or file it comes from (never the token)."""
        if self.settings.influxdb.token is not None:
            return (
                f"the {self.role} token from setting influxdb.token "
                "(KOTAFLOW_INFLUXDB__TOKEN or the config file; read at start only)"
            )
        explicit = self.settings.processing.influx_token_file
        if explicit is not None:
            return f"the {self.role} token from file {explicit} (processing.influx_token_file)"
        file = self._token_file()
        if file is not None:
            return f"the {self.role} token from file {file} (processing.influx_token_dir)"
        return (
            f"the {self._json_role()!r} token from {self.tokens_json} "
            "(written by `kotaflow stack up`)"
        )

    @property
    def rereadable(self) -> bool:
        """Whether reading again can give another token (a file can change, a setting not)."""
        return self.settings.influxdb.token is None

    def read(self) -> str:
        """The token now; a token read from a file is masked in the logs from then on."""
        if self.settings.influxdb.token is not None:
            return self.settings.influxdb.token.get_secret_value()
        explicit = self.settings.processing.influx_token_file or self._token_file()
        if explicit is not None:
            return _token_in(explicit, self.roles)
        tokens = _tokens_json(self.tokens_json)
        for name in self.roles:
            found = tokens.get(name)
            if isinstance(found, str) and found:
                redact(found)
                return found
        raise InfluxConfigError(
            f"no InfluxDB token: set influxdb.token (KOTAFLOW_INFLUXDB__TOKEN), "
            f"processing.influx_token_file or processing.influx_token_dir, or run "
            f"`kotaflow stack up` (no {' or '.join(map(repr, self.roles))} token in "
            f"{self.tokens_json})"
        )


def _token_in(path: Path, roles: list[str]) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        files = " or ".join(f"{name}.token" for name in roles)
        raise InfluxConfigError(
            f"no InfluxDB token for {roles[0]}: no {files} in {path.parent}"
        ) from None
    except OSError as err:
        raise InfluxConfigError(f"cannot read InfluxDB token file {path}: {err}") from None
    if not token:
        raise InfluxConfigError(f"InfluxDB token file {path} is empty")
    redact(token)
    return token


def _tokens_json(path: Path) -> dict[str, Any]:
    try:
        found: Any = json.loads(path.read_text(encoding="utf-8")).get("tokens", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def resolve_token(settings: Settings, role: str, fallback: str | None = None) -> str:
    """The token for ``role`` (else ``fallback``) as configured now (see :class:`TokenSource`)."""
    return TokenSource(settings, role, fallback).read()
