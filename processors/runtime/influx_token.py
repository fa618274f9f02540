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
"""Roles of the local stack's tokens (``deploy/local/influxdb.py``): the pipeline token may
write both buckets, the Grafana token read them; the processors use each for what it allows."""


@dataclass(frozen=True, slots=True)
class TokenSource:
    """``influxdb.token`` if set; else ``processing.influx_token_file``; else the local
    stack's token for ``role`` from ``<state>/influxdb/tokens.json``."""

    settings: Settings
    role: str

    @property
    def tokens_json(self) -> Path:
        return self.settings.stack.state_dir / "influxdb" / "tokens.json"

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
        return f"the {self.role!r} token from {self.tokens_json} (written by `kotaflow stack up`)"

    @property
    def rereadable(self) -> bool:
        """Whether reading again can give another token (a file can change, a setting not)."""
        return self.settings.influxdb.token is None

    def read(self) -> str:
        """The token now; a token read from a file is masked in the logs from then on."""
        if self.settings.influxdb.token is not None:
            return self.settings.influxdb.token.get_secret_value()
        explicit = self.settings.processing.influx_token_file
        if explicit is not None:
            try:
                token = explicit.read_text().strip()
            except OSError as err:
                raise InfluxConfigError(
                    f"cannot read InfluxDB token file {explicit}: {err}"
                ) from None
            if token:
                redact(token)
                return token
            raise InfluxConfigError(f"InfluxDB token file {explicit} is empty")
        path = self.tokens_json
        try:
            found: Any = json.loads(path.read_text()).get("tokens", {}).get(self.role)
        except (OSError, ValueError, AttributeError):
            found = None
        if isinstance(found, str) and found:
            redact(found)
            return found
        raise InfluxConfigError(
            f"no InfluxDB token: set influxdb.token (KOTAFLOW_INFLUXDB__TOKEN) or "
            f"processing.influx_token_file, or run `kotaflow stack up` "
            f"(no {self.role!r} token in {path})"
        )


def resolve_token(settings: Settings, role: str) -> str:
    """The token for ``role`` as configured now (see :class:`TokenSource`)."""
    return TokenSource(settings, role).read()
