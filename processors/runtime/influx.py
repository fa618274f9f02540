"""Writing to and reading from InfluxDB 2.x with influxdb-client's async API, done reliably.

The async API has no batching and no retries: each awaited write is one HTTP POST. This
module adds what the stages need on top of it:

* :meth:`InfluxSink.write` sends one batch of line protocol, gzip-compressed (level 1 in a
  worker thread: the client's own gzip runs at level 9 on the event loop and costs more than
  building the lines), and returns only once InfluxDB accepted all of it. It retries
  429/5xx/no-answer forever with backoff, honouring ``Retry-After``, so an outage stalls
  the stage (offsets stay uncommitted) instead of losing data.
* A 400 (a line InfluxDB refuses) or 413 (too large) is not retried as is: the batch is
  halved until the refused lines are alone; they are returned to the caller, which
  dead-letters them. Every other line is written.
* :meth:`InfluxSink.query` runs a Flux query (with the same retries) and returns rows.

Create :class:`InfluxSink` inside a coroutine (``async with InfluxSink(...)``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from kotaflow.logs import redact
from kotaflow.settings import Settings
from processors.runtime.retry import Backoff, parse_retry_after, retryable

log = logging.getLogger("kotaflow.processors.influx")

T = TypeVar("T")


class InfluxConfigError(RuntimeError):
    """No usable InfluxDB token: the message says where one was looked for."""


WRITE_ROLE, READ_ROLE = "pipeline", "grafana"
"""The local stack's shared tokens (``deploy/local/influxdb.py``): ``pipeline`` may write
both buckets, ``grafana`` read them. What a client without a role of its own uses, and what
each role falls back to on a stack set up before the per-stage tokens."""
STORE_ROLE, AGGREGATE_ROLE, ALERT_ROLE, HEALTH_ROLE = "store", "aggregate", "alert", "health"
"""Per-stage tokens, each with the least rights InfluxDB 2.x can express: ``store`` writes
``telemetry``; ``aggregate`` writes ``rollups`` and reads both buckets (recomputing from raw
points and minute rollups); ``alert`` writes its events' bucket (``telemetry``); ``health``
writes the health figures' bucket (``rollups``)."""


def resolve_token(settings: Settings, role: str, fallback: str | None = None) -> str:
    """The InfluxDB token for ``role``, from the first of:

    1. ``influxdb.token`` (one token for everything);
    2. ``processing.influx_token_file`` (the same, from a file: old configs);
    3. ``<role>.token`` in ``processing.influx_token_dir``, else the ``fallback`` role's;
    4. the local stack's token for ``role`` (else ``fallback``) in
       ``<state>/influxdb/tokens.json``.

    A token read from a file is masked in the logs from then on."""
    if settings.influxdb.token is not None:
        return settings.influxdb.token.get_secret_value()
    explicit = settings.processing.influx_token_file
    if explicit is not None:
        return _token_in(explicit)
    roles = list(dict.fromkeys(r for r in (role, fallback) if r))
    folder = settings.processing.influx_token_dir
    if folder is not None:
        for name in roles:
            if (folder / f"{name}.token").is_file():
                return _token_in(folder / f"{name}.token")
        files = " or ".join(f"{name}.token" for name in roles)
        raise InfluxConfigError(f"no InfluxDB token for {role}: no {files} in {folder}")
    path = settings.stack.state_dir / "influxdb" / "tokens.json"
    try:
        tokens: Any = json.loads(path.read_text()).get("tokens", {})
    except (OSError, ValueError, AttributeError):
        tokens = {}
    for name in roles:
        found = tokens.get(name) if isinstance(tokens, dict) else None
        if isinstance(found, str) and found:
            redact(found)
            return found
    raise InfluxConfigError(
        f"no InfluxDB token: set influxdb.token (KOTAFLOW_INFLUXDB__TOKEN), "
        f"processing.influx_token_file or processing.influx_token_dir, or run "
        f"`kotaflow stack up` (no {' or '.join(map(repr, roles))} token in {path})"
    )


def _token_in(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise InfluxConfigError(f"cannot read InfluxDB token file {path}: {err}") from None
    if not token:
        raise InfluxConfigError(f"InfluxDB token file {path} is empty")
    redact(token)
    return token


@dataclass(frozen=True, slots=True)
class Refused:
    """A line InfluxDB would not take, and what it said."""

    line: str
    status: int
    message: str


def _status_of(err: BaseException) -> tuple[int | None, str | None, str]:
    """(HTTP status or None for no answer, Retry-After, message) of a failed request."""
    if isinstance(err, ApiException):
        headers: Any = err.headers or {}
        retry_after = headers.get("Retry-After") if hasattr(headers, "get") else None
        body = err.body.decode(errors="replace") if isinstance(err.body, bytes) else str(err.body)
        return err.status, retry_after, f"{err.status} {err.reason}: {body[:500]}"
    return None, None, f"{type(err).__name__}: {err}"


_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class InfluxSink:
    """InfluxDB clients for one ``role`` (its token, see :func:`resolve_token`; without
    one: the shared ``pipeline`` token writes, ``grafana`` reads)."""

    def __init__(
        self,
        settings: Settings,
        on_retry: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        role: str | None = None,
    ) -> None:
        self._settings = settings
        self.role = role
        self._backoff = Backoff.from_settings(settings.processing.retry)
        self._on_retry = on_retry
        self._sleep = sleep
        self._writer: InfluxDBClientAsync | None = None
        self._reader: InfluxDBClientAsync | None = None
        self._writes: WriteService | None = None

    def tokens(self) -> tuple[str, str]:
        """(write token, read token) of this sink's role; raises :class:`InfluxConfigError`."""
        s, role = self._settings, self.role
        return (
            resolve_token(s, role or WRITE_ROLE, WRITE_ROLE),
            resolve_token(s, role or READ_ROLE, READ_ROLE),
        )

    def _connect(self, token: str) -> InfluxDBClientAsync:
        return InfluxDBClientAsync(
            url=self._settings.influxdb.url,
            token=token,
            org=self._settings.influxdb.org,
            timeout=int(self._settings.processing.retry.timeout_s * 1000),
            enable_gzip=False,
        )

    async def __aenter__(self) -> InfluxSink:
        write_token, read_token = self.tokens()
        self._writer = self._connect(write_token)
        # One client when one token does both (a client costs ~30 ms of CPU to make).
        self._reader = self._writer if read_token == write_token else self._connect(read_token)
        self._writes = WriteService(self._writer.api_client)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in {id(c): c for c in (self._writer, self._reader) if c is not None}.values():
            await client.close()  # type: ignore[no-untyped-call]
        self._writer = self._reader = None

    async def write(self, bucket: str, lines: Sequence[str]) -> list[Refused]:
        """Write all ``lines`` (ms precision); return the ones InfluxDB refused as invalid."""
        if not lines:
            return []
        refused: list[Refused] = []
        pending: list[Sequence[str]] = [lines]
        while pending:
            chunk = pending.pop()
            status, message = await self._post_with_retries(bucket, chunk)
            if status is None:
                continue
            if len(chunk) == 1:
                refused.append(Refused(chunk[0], status, message))
                log.warning(
                    "InfluxDB refused a line", extra={"line": chunk[0][:300], "why": message}
                )
                continue
            half = len(chunk) // 2
            pending += [chunk[half:], chunk[:half]]
        return refused

    async def _post_with_retries(self, bucket: str, chunk: Sequence[str]) -> tuple[int | None, str]:
        """POST until accepted (None) or refused for good (status, message)."""
        body = await asyncio.to_thread(_gzip, chunk)
        attempt = 0
        while True:
            try:
                assert self._writes is not None, "use InfluxSink inside `async with`"
                await self._writes.post_write_async(  # type: ignore[no-untyped-call]
                    org=self._settings.influxdb.org,
                    bucket=bucket,
                    body=body,
                    precision="ms",
                    content_encoding="gzip",
                    content_type="text/plain; charset=utf-8",
                )
                return None, ""
            except (ApiException, *_TRANSPORT_ERRORS) as err:
                status, retry_after, message = _status_of(err)
                if not retryable(status):
                    return status if status is not None else 400, message
                attempt += 1
                await self._wait(attempt, retry_after, f"write {bucket}", message)

    async def query(self, flux: str) -> list[dict[str, Any]]:
        """Rows (``record.values``) of a Flux query, retried like writes."""
        assert self._reader is not None, "use InfluxSink inside `async with`"
        attempt = 0
        while True:
            try:
                tables = await self._reader.query_api().query(flux, org=self._settings.influxdb.org)
                return [record.values for table in tables for record in table.records]
            except (ApiException, *_TRANSPORT_ERRORS) as err:
                status, retry_after, message = _status_of(err)
                if not retryable(status):
                    raise
                attempt += 1
                await self._wait(attempt, retry_after, "query", message)

    async def ping(self) -> bool:
        assert self._writer is not None
        try:
            return bool(await self._writer.ping())
        except _TRANSPORT_ERRORS:
            return False

    async def _wait(self, attempt: int, retry_after: str | None, what: str, message: str) -> None:
        delay = self._backoff.delay(
            attempt, parse_retry_after(retry_after, time.time()), random.random()
        )
        log.warning(
            "InfluxDB %s failed, retrying",
            what,
            extra={"attempt": attempt, "in_s": delay, "why": message},
        )
        if self._on_retry is not None:
            self._on_retry(what, message)
        await self._sleep(delay)


def _gzip(lines: Sequence[str]) -> bytes:
    return gzip.compress("\n".join(lines).encode(), compresslevel=1)


def flux_string(value: str) -> str:
    """A Flux string literal (``"`` and ``\\`` escaped, ``${`` kept literal)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'
