"""Writing to and reading from InfluxDB 2.x with influxdb-client's async API, done reliably.

The async API has no batching and no retries: each awaited write is one HTTP POST. This
module adds what the stages need on top of it:

* :meth:`InfluxSink.write` sends one batch of line protocol, gzip-compressed (level 1, in a
  worker thread when large: the client's own gzip runs at level 9 on the event loop and
  costs more than building the lines), and returns only once InfluxDB accepted all of it.
* Only an answer that names refused lines (a 400 "unable to parse", a 422 partial write)
  is about the data: the batch is halved until the refused lines are alone; they are
  returned to the caller, which dead-letters them. Every other line is written.
* Every other failure (401/403 token, 404 bucket/org, 413 for one line, 429/5xx, timeout,
  no answer) stalls the caller: the same write is retried for ever with backoff,
  honouring ``Retry-After``, and reported through :class:`~processors.runtime.write_block.BlockLog`
  (one error line a minute saying what to fix, ``kotaflow_write_blocked{stage,reason}``).
  The token is read again from its source before each retry, so a token rotated in its
  file (after a 401/403, or for a re-created bucket) is picked up without a restart.
  A 413 for several lines halves them.
* :meth:`InfluxSink.query` runs a Flux query and returns rows: for a stage stalled and
  retried the same way (a 400 is a bad query and raises); for a tool only outages retry.

Writes and pings are plain ``aiohttp`` requests; influxdb-client runs the Flux queries
and is imported (in a worker thread) only when the first query comes. Importing it costs
~0.7 s of CPU here (it loads every generated API model, urllib3, reactivex, dateutil):
half of ``kotaflow process``'s start to first write, for a write that is one POST.

Create :class:`InfluxSink` inside a coroutine (``async with InfluxSink(...)``).
"""

from __future__ import annotations

import asyncio
import gzip
import importlib
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from kotaflow.settings import Settings
from processors.runtime.influx_token import (
    AGGREGATE_ROLE,
    ALERT_ROLE,
    HEALTH_ROLE,
    READ_ROLE,
    STORE_ROLE,
    WRITE_ROLE,
    InfluxConfigError,
    TokenSource,
)
from processors.runtime.influx_token import resolve_token as resolve_token
from processors.runtime.retry import Backoff, parse_retry_after, retryable
from processors.runtime.write_block import (
    BlockGauge,
    BlockLog,
    BlockReason,
    Target,
    Verdict,
    block_reason,
    judge,
)

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

log = logging.getLogger("kotaflow.processors.influx")

T = TypeVar("T")

__all__ = [
    "AGGREGATE_ROLE",
    "ALERT_ROLE",
    "HEALTH_ROLE",
    "READ_ROLE",
    "STORE_ROLE",
    "WRITE_ROLE",
    "InfluxConfigError",
    "InfluxSink",
    "Refused",
    "flux_string",
    "resolve_token",
]


@dataclass(frozen=True, slots=True)
class Refused:
    """A line InfluxDB would not take, and what it said."""

    line: str
    status: int
    message: str


class InfluxAnswerError(Exception):
    """InfluxDB answered a write or ping with an error status (the shape of
    influxdb-client's ``ApiException``, which its queries raise)."""

    def __init__(self, status: int, reason: str, body: bytes, headers: Any) -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers


def _answer_of(err: BaseException) -> Any | None:
    """``err`` if it carries InfluxDB's answer (status, reason, body, headers)."""
    if isinstance(err, InfluxAnswerError):
        return err
    rest = sys.modules.get("influxdb_client.rest")  # loaded once a query ran
    if rest is not None and isinstance(err, rest.ApiException):
        return err
    return None


def _status_of(err: BaseException) -> tuple[int | None, str | None, str]:
    """(HTTP status or None for no answer, Retry-After, message) of a failed request."""
    answer = _answer_of(err)
    if answer is not None:
        headers: Any = answer.headers or {}
        retry_after = headers.get("Retry-After") if hasattr(headers, "get") else None
        body = answer.body
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        return answer.status, retry_after, f"{answer.status} {answer.reason}: {text[:500]}"
    return None, None, f"{type(err).__name__}: {err}"


_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

_QUERY_MODULES = ("influxdb_client.rest", "influxdb_client.client.influxdb_client_async")


def _load_query_modules() -> tuple[ModuleType, ModuleType]:
    rest, client = (importlib.import_module(name) for name in _QUERY_MODULES)
    return rest, client


class _Client:
    """One token's connections: an aiohttp session for writes and pings, and the
    influxdb-client client for queries (made at the first query)."""

    def __init__(self, settings: Settings, source: TokenSource) -> None:
        self.source = source
        self.token = self.source.read()
        self._settings = settings
        self._timeout_s = settings.processing.retry.timeout_s
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        self._query_client: InfluxDBClientAsync | None = None
        self._making: asyncio.Lock | None = None

    def _url(self, path: str) -> str:
        return self._settings.influxdb.url.rstrip("/") + path

    async def post_write(self, bucket: str, body: bytes) -> None:
        """POST gzipped line protocol (ms precision); raises :class:`InfluxAnswerError`."""
        params = {"org": self._settings.influxdb.org, "bucket": bucket, "precision": "ms"}
        headers = {
            "Authorization": f"Token {self.token}",
            "Content-Encoding": "gzip",
            "Content-Type": "text/plain; charset=utf-8",
        }
        async with self.http.post(
            self._url("/api/v2/write"), params=params, data=body, headers=headers
        ) as response:
            if response.status >= 300:
                raise InfluxAnswerError(
                    response.status, response.reason or "", await response.read(), response.headers
                )

    async def ping(self) -> bool:
        async with self.http.get(self._url("/ping")) as response:
            return response.status < 300

    async def query_client(self) -> tuple[ModuleType, InfluxDBClientAsync]:
        """influxdb-client's ``rest`` module (its ``ApiException``) and the query client."""
        rest, module = await asyncio.to_thread(_load_query_modules)  # imported once
        if self._query_client is None:
            self._making = self._making or asyncio.Lock()
            async with self._making:
                if self._query_client is None:
                    self._query_client = module.InfluxDBClientAsync(
                        url=self._settings.influxdb.url,
                        token=self.token,
                        org=self._settings.influxdb.org,
                        timeout=int(self._timeout_s * 1000),
                        enable_gzip=False,
                    )
        return rest, self._query_client

    async def close(self) -> None:
        await self.http.close()
        if self._query_client is not None:
            await self._query_client.close()  # type: ignore[no-untyped-call]

    def reread_token(self) -> None:
        """Use the token its source holds now (a rotated token file); keep the old one if
        the source cannot be read right now."""
        if not self.source.rereadable:
            return
        try:
            token = self.source.read()
        except InfluxConfigError as err:
            log.warning("InfluxDB token not re-read", extra={"why": str(err)})
            return
        if token != self.token:
            self.token = token
            if self._query_client is not None:
                self._query_client.api_client.set_default_header("Authorization", f"Token {token}")  # type: ignore[no-untyped-call]
            log.warning(
                "InfluxDB token changed in its source: using the new one",
                extra={"token": self.source.where()},
            )


class InfluxSink:
    """InfluxDB clients (write, read) with the token of one ``role`` (least privilege per
    stage; without a role, or on a stack set up before per-stage tokens, the shared
    ``pipeline`` token writes and ``grafana`` reads). One client when one token does both.

    ``gauge`` (the process's :class:`~processors.runtime.health.Health`) gets the stalls and
    retries per stage; each call names its stage (``stage=``)."""

    def __init__(
        self,
        settings: Settings,
        gauge: BlockGauge | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        on_retry: Callable[[str], None] | None = None,
        role: str | None = None,
    ) -> None:
        self._settings = settings
        self.role = role
        self._backoff = Backoff.from_settings(settings.processing.retry)
        self._blocks = BlockLog(gauge)
        self._on_retry = on_retry
        self._sleep = sleep
        self._writer: _Client | None = None
        self._reader: _Client | None = None

    def _sources(self) -> tuple[TokenSource, TokenSource]:
        role = self.role
        return (
            TokenSource(self._settings, role or WRITE_ROLE, WRITE_ROLE),
            TokenSource(self._settings, role or READ_ROLE, READ_ROLE),
        )

    def tokens(self) -> tuple[str, str]:
        """The (write, read) tokens as configured now: a key to share one sink between
        roles that resolve to the same tokens (never logged); raises
        :class:`InfluxConfigError`."""
        write, read = self._sources()
        return write.read(), read.read()

    async def __aenter__(self) -> InfluxSink:
        write, read = self._sources()
        self._writer = _Client(self._settings, write)
        # One client when one token from one place does both (a client costs ~30 ms of CPU).
        same = self._writer.token == read.read() and (
            read.where() == write.where() or not write.rereadable
        )
        self._reader = self._writer if same else _Client(self._settings, read)
        return self

    async def __aexit__(self, *exc: object) -> None:
        held = {id(c): c for c in (self._writer, self._reader) if c is not None}
        for client in held.values():
            await client.close()
        self._writer = self._reader = None

    def blocked(self, stage: str) -> BlockReason | None:
        """Why ``stage``'s requests stall right now, or None."""
        return self._blocks.reason(stage)

    async def write(
        self, bucket: str, lines: Sequence[str], stage: str = "influxdb"
    ) -> list[Refused]:
        """Write all ``lines`` (ms precision); return the ones InfluxDB refused as invalid.
        Does not return while InfluxDB refuses for any other reason (see the module)."""
        if not lines:
            return []
        refused: list[Refused] = []
        pending: list[Sequence[str]] = [lines]
        while pending:
            chunk = pending.pop()
            verdict, status, message = await self._post_until_judged(bucket, chunk, stage)
            if verdict is None:
                continue
            if verdict is Verdict.REFUSED and len(chunk) == 1:
                refused.append(Refused(chunk[0], status, message))
                log.warning(
                    "InfluxDB refused a line", extra={"line": chunk[0][:300], "why": message}
                )
                continue
            half = len(chunk) // 2
            pending += [chunk[half:], chunk[:half]]
        return refused

    async def _post_until_judged(
        self, bucket: str, chunk: Sequence[str], stage: str
    ) -> tuple[Verdict | None, int, str]:
        """POST until accepted (None) or answered about the data or its size."""
        body = await _gzip(chunk)
        attempt = 0
        while True:
            writer = self._writer
            assert writer is not None, "use InfluxSink inside `async with`"
            try:
                await writer.post_write(bucket, body)
            except (InfluxAnswerError, *_TRANSPORT_ERRORS) as err:
                status, retry_after, message = _status_of(err)
                verdict = judge(status, message, len(chunk))
                if verdict is not Verdict.BLOCKED:
                    self._blocks.cleared(stage)
                    return verdict, status or 0, message
                attempt += 1
                await self._stall(stage, writer, bucket, err, attempt, retry_after)
                continue
            self._blocks.cleared(stage)
            return None, 0, ""

    async def query(self, flux: str, stage: str | None = None) -> list[dict[str, Any]]:
        """Rows (``record.values``) of a Flux query. A 400 (the query is wrong) raises.
        For a ``stage``, any other failure stalls and is retried like a write; for a tool
        (no stage: a dashboard check, a test) only what may pass by itself (no answer,
        429, 5xx) is retried and the rest raises, so a bad token fails the tool at once."""
        attempt = 0
        while True:
            reader = self._reader
            assert reader is not None, "use InfluxSink inside `async with`"
            rest, client = await reader.query_client()
            try:
                tables = await client.query_api().query(flux, org=self._settings.influxdb.org)
            except (rest.ApiException, *_TRANSPORT_ERRORS) as err:
                status, retry_after, _ = _status_of(err)
                if status == 400 or (stage is None and not retryable(status)):
                    raise
                attempt += 1
                await self._stall(stage or "query", reader, None, err, attempt, retry_after)
                continue
            if stage is not None:
                self._blocks.cleared(stage)
            return [record.values for table in tables for record in table.records]

    async def ping(self) -> bool:
        assert self._writer is not None
        try:
            return await self._writer.ping()
        except _TRANSPORT_ERRORS:
            return False

    async def _stall(
        self,
        stage: str,
        client: _Client,
        bucket: str | None,
        err: BaseException,
        attempt: int,
        retry_after: str | None,
    ) -> None:
        """Report the block, wait the backoff, and read the token again if it was refused."""
        status, _, message = _status_of(err)
        timed_out = isinstance(err, asyncio.TimeoutError)
        reason = block_reason(status, message, timed_out)
        target = Target(
            url=self._settings.influxdb.url,
            org=self._settings.influxdb.org,
            bucket=bucket,
            token=client.source.where(),
            token_rereadable=client.source.rereadable,
        )
        self._blocks.blocked(stage, reason, message, target)
        if self._on_retry is not None:
            self._on_retry(stage)
        delay = self._backoff.delay(
            attempt, parse_retry_after(retry_after, time.time()), random.random()
        )
        await self._sleep(delay)
        client.reread_token()  # cheap, and the fix for 401/403 (and a re-created bucket)


INLINE_GZIP_BYTES = 64 * 1024
"""Bodies up to this size are compressed on the event loop (~0.3 ms at most): for the small
writes of a steady city rate the hop to a worker thread cost more than the gzip."""


async def _gzip(lines: Sequence[str]) -> bytes:
    text = "\n".join(lines).encode()
    if len(text) <= INLINE_GZIP_BYTES:
        return gzip.compress(text, compresslevel=1)
    return await asyncio.to_thread(gzip.compress, text, 1)


def flux_string(value: str) -> str:
    """A Flux string literal (``"`` and ``\\`` escaped, ``${`` kept literal)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'
