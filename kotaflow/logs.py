"""Structured logs: one JSON object per line on stderr, so operators can grep and ship them.

Secrets never reach the log: the handler carries a :class:`RedactSecrets` filter that
replaces every password, token and key kotaflow knows of with ``***`` in the message, its
arguments, extra fields and tracebacks. Settings register their secret values when they are
loaded (:func:`redact_settings`); code that reads a credential from a file registers it on
the spot (:func:`redact`). Masking values rather than field names also catches a secret
that turns up where nobody expected it (an exception quoting a URL, a library's repr).

Repeats are collapsed: the handler's :class:`CollapseRepeats` filter lets a warning or
error through once per :data:`REPEAT_INTERVAL_S` per logger and message template (the
format string, before its arguments are filled in); the next one after the interval
carries ``repeated``, how many were held back meanwhile. A line that is paced already
(one per retry attempt) says so with ``extra=ONE_LINE_EACH`` and is never held back.
A Kafka outage made aiokafka log "Unable connect to node ..." ~4,500 times in 20 s; it
now takes a few lines. The filter sits on the root handler, so every library's logger
(aiokafka's too) goes through it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from pydantic import BaseModel, SecretStr

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_OWN_KEYS = frozenset({"ts", "level", "logger", "msg", "exc"})
"""The formatter's own keys: an ``extra`` of the same name is written as ``extra_<name>``."""
_COLLAPSE = "kotaflow_collapse"
ONE_LINE_EACH = {_COLLAPSE: False}
"""``extra=`` for a line that is already paced (one per retry attempt): never collapsed."""
MASK = "***"
MIN_SECRET_LENGTH = 6
"""Shorter values are not masked: they would blank ordinary words, and are no secret anyway."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key != _COLLAPSE:
                # an extra never replaces a key every log tool relies on (``level``, ...)
                entry[f"extra_{key}" if key in _OWN_KEYS else key] = value
        if record.exc_text:
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


REPEAT_INTERVAL_S = 10.0
"""A repeated warning or error is let through at most once in this many seconds."""


class CollapseRepeats(logging.Filter):
    """Holds back repeats of a warning/error (same logger, level and template) within
    ``interval_s``; the first one after it says how many were held back (``repeated``)."""

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._seen: dict[tuple[str, int, str], list[float]] = {}
        """key -> [when last let through, how many held back since]"""
        self._lock = threading.Lock()  # paho's network thread logs too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not getattr(record, _COLLAPSE, True):
            return True
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and record.created - seen[0] < self.interval_s:
                seen[1] += 1
                return False
            if seen is not None and seen[1]:
                record.repeated = int(seen[1])
                record.repeated_over_s = round(record.created - seen[0], 1)
            self._seen[key] = [record.created, 0]
        return True


class RedactSecrets(logging.Filter):
    """Masks known secret values in every record that passes the handler it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._formatter = logging.Formatter()

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg, record.args = self.scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, self._scrub_value(value))
        return True

    def _scrub_value(self, value: object) -> object:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        text = str(value)
        scrubbed = self.scrub(text)
        return value if scrubbed == text else scrubbed


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger; ``KOTAFLOW_LOG_LEVEL`` sets the default level.

    May be called again (a command sets its level once settings are loaded): the secrets
    registered so far stay masked.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CollapseRepeats())  # first: it keys on the template, redaction fills it in
    handler.addFilter(_redactor() or RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("KOTAFLOW_LOG_LEVEL", "INFO").upper())
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def redact(*secrets: str | SecretStr | None) -> None:
    """Mask these values in every log line from now on (no-op before :func:`setup_logging`)."""
    redactor = _redactor()
    if redactor is not None:
        redactor.add(
            *(s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets if s)
        )


def redact_settings(settings: BaseModel) -> None:
    """Mask every ``SecretStr`` value found anywhere in a settings model."""
    redact(*_secret_values(settings))


def _secret_values(value: object) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, BaseModel):
        return [
            s for field in type(value).model_fields for s in _secret_values(getattr(value, field))
        ]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _secret_values(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _secret_values(item)]
    return []


def _redactor() -> RedactSecrets | None:
    """The filter on the root logger's handlers: it lives with the logging configuration,
    which is process-wide by nature, rather than in a module variable."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactSecrets):
                return found
    return None
