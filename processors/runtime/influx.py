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
"""Roles of the local stack's tokens (``deploy/local/influxdb.py``): the pipeline token may
write both buckets, the Grafana token read them; the processors use each for what it allows."""


def resolve_token(settings: Settings, role: str) -> str:
    """``influxdb.token`` if set; else ``processing.influx_token_file``; else the local
    stack's token for ``role`` from ``<state>/influxdb/tokens.json``. A token read from a
    file is masked in the logs from then on."""
    if settings.influxdb.token is not None:
        return settings.influxdb.token.get_secret_value()
    explicit = settings.processing.influx_token_file
    if explicit is not None:
        try:
            token = explicit.read_text().strip()
        except OSError as err:
            raise InfluxConfigError(f"cannot read InfluxDB token file {explicit}: {err}") from None
        if token:
            redact(token)
            return token
        raise InfluxConfigError(f"InfluxDB token file {explicit} is empty")
    path = settings.stack.state_dir / "influxdb" / "tokens.json"
    try:
        found: Any = json.loads(path.read_text()).get("tokens", {}).get(role)
    except (OSError, ValueError, AttributeError):
        found = None
    if isinstance(found, str) and found:
        redact(found)
        return found
    raise InfluxConfigError(
        f"no InfluxDB token: set influxdb.token (KOTAFLOW_INFLUXDB__TOKEN) or "
        f"processing.influx_token_file, or run `kotaflow stack up` (no {role!r} token in {path})"
    )


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
    """One InfluxDB client, shared by the stages of a process."""

    def __init__(
        self,
        settings: Settings,
        on_retry: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._backoff = Backoff.from_settings(settings.processing.retry)
        self._on_retry = on_retry
        self._sleep = sleep
        self._writer: InfluxDBClientAsync | None = None
        self._reader: InfluxDBClientAsync | None = None
        self._writes: WriteService | None = None

    def _connect(self, role: str) -> InfluxDBClientAsync:
        return InfluxDBClientAsync(
            url=self._settings.influxdb.url,
            token=resolve_token(self._settings, role),
            org=self._settings.influxdb.org,
            timeout=int(self._settings.processing.retry.timeout_s * 1000),
            enable_gzip=False,
        )

    async def __aenter__(self) -> InfluxSink:
        self._writer = self._connect(WRITE_ROLE)
        self._reader = self._connect(READ_ROLE)
        self._writes = WriteService(self._writer.api_client)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in (self._writer, self._reader):
            if client is not None:
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
