"""What an InfluxDB failure means for the data, and how a stalled stage says what to fix.

Only an answer that names refused lines is about the data: a 400 whose message quotes
lines it could not parse (``unable to parse '...'``), or a 422 partial write (field type
conflict, point outside the retention). Those lines are isolated and dead-lettered.
Everything else — 401/403 (token), 404 (bucket or org), 413 for a single line, 429/5xx,
another 400 (a request InfluxDB will never take: configuration), a timeout, no answer at
all — is not the readings' fault: the stage *stalls*. It retries the same write with
backoff, commits nothing past it, and reports the block (:class:`BlockLog`): one error
line per minute naming the stage, bucket, URL and token source (never the token) and
what to do, the gauge ``kotaflow_write_blocked{stage,reason}`` and the stage's status.

:func:`judge` and :func:`fix_hint` are pure; :class:`BlockLog` keeps the per-stage state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

log = logging.getLogger("kotaflow.processors.influx")

REPORT_EVERY_S = 60.0
"""A stalled stage repeats its error line this often (and logs the first at once)."""


class BlockReason(StrEnum):
    """Why writes are stalled: the ``reason`` label of ``kotaflow_write_blocked``."""

    UNAUTHORIZED = "unauthorized"
    """401: the token is unknown to InfluxDB (revoked, deleted, mistyped)."""
    FORBIDDEN = "forbidden"
    """403: the token is valid but may not write (read) this bucket."""
    BUCKET_NOT_FOUND = "bucket_not_found"
    ORG_NOT_FOUND = "org_not_found"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    """413 for a single line: InfluxDB's request size limit is below one point."""
    OVERLOADED = "overloaded"
    """429/503: InfluxDB asks us to slow down."""
    SERVER_ERROR = "server_error"
    BAD_REQUEST = "bad_request"
    """Another 4xx that names no line: the request itself (configuration), not the data."""
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    """No answer: connection refused, DNS, reset."""


class Verdict(StrEnum):
    REFUSED = "refused"
    """The answer names refused lines: isolate them (bisect) and dead-letter them."""
    SPLIT = "split"
    """413 for several lines: write them in halves (nothing is dead-lettered)."""
    BLOCKED = "blocked"
    """Not about the data: retry the same write until it succeeds."""


def judge(status: int | None, message: str, lines: int) -> Verdict:
    """What to do after a write of ``lines`` lines ended with ``status`` (None: no answer)."""
    if status == 422 or (status == 400 and "unable to parse" in message):
        return Verdict.REFUSED
    if status == 413 and lines > 1:
        return Verdict.SPLIT
    return Verdict.BLOCKED


def block_reason(status: int | None, message: str, timed_out: bool = False) -> BlockReason:
    """The label for a write (or query) that is stalled on this answer."""
    if status is None:
        return BlockReason.TIMEOUT if timed_out else BlockReason.UNREACHABLE
    if status == 401:
        return BlockReason.UNAUTHORIZED
    if status == 403:
        return BlockReason.FORBIDDEN
    if status == 404:
        if "bucket" in message:
            return BlockReason.BUCKET_NOT_FOUND
        if "organization" in message:
            return BlockReason.ORG_NOT_FOUND
        return BlockReason.NOT_FOUND
    if status == 413:
        return BlockReason.TOO_LARGE
    if status in (429, 503):
        return BlockReason.OVERLOADED
    if status == 408:
        return BlockReason.TIMEOUT
    if status >= 500:
        return BlockReason.SERVER_ERROR
    return BlockReason.BAD_REQUEST


@dataclass(frozen=True, slots=True)
class Target:
    """What a blocked request was aimed at, for the error line (no secrets here)."""

    url: str
    org: str
    bucket: str | None
    token: str
    """Where the token comes from (``TokenSource.where()``), not the token."""
    token_rereadable: bool


def fix_hint(reason: BlockReason, target: Target) -> str:
    """One sentence an operator can act on."""
    bucket = f"bucket {target.bucket!r}" if target.bucket else "its buckets"
    fix_token = (
        "put a valid token there; it is read again on every retry and the stage resumes by itself"
        if target.token_rereadable
        else "set a valid one and restart"
    )
    if reason is BlockReason.UNAUTHORIZED:
        return f"InfluxDB does not know {target.token} (revoked or mistyped): {fix_token}"
    if reason is BlockReason.FORBIDDEN:
        return (
            f"{target.token} may not write/read {bucket} in org {target.org!r} (a bucket "
            f"that was re-created has a new id: tokens must be re-issued for it): {fix_token}"
        )
    if reason is BlockReason.BUCKET_NOT_FOUND:
        return (
            f"{bucket} does not exist in org {target.org!r} on {target.url}: create it "
            "(`kotaflow stack up` re-creates the local stack's) and grant the token on it"
        )
    if reason is BlockReason.ORG_NOT_FOUND:
        return f"org {target.org!r} does not exist on {target.url}: check influxdb.org"
    if reason is BlockReason.TOO_LARGE:
        return f"InfluxDB at {target.url} refuses even a single point as too large"
    if reason in (BlockReason.UNREACHABLE, BlockReason.TIMEOUT):
        return f"InfluxDB at {target.url} does not answer: start it or check influxdb.url"
    if reason in (BlockReason.OVERLOADED, BlockReason.SERVER_ERROR):
        return f"InfluxDB at {target.url} is overloaded or failing: see its log"
    return f"InfluxDB at {target.url} refuses the request itself: check the influxdb settings"


class BlockGauge(Protocol):
    """Where a block is published (``processors.runtime.health.Health`` implements it)."""

    def write_blocked(self, stage: str, reason: str | None, fix: str = "") -> None: ...


@dataclass(slots=True)
class _Block:
    reason: BlockReason
    since: float
    attempts: int = 0
    reported_at: float | None = None


class BlockLog:
    """Per-stage block state of one process: the gauge, and the error line once a minute."""

    def __init__(
        self, gauge: BlockGauge | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._gauge = gauge
        self._clock = clock
        self._blocks: dict[str, _Block] = {}

    def blocked(self, stage: str, reason: BlockReason, why: str, target: Target) -> None:
        """One more failed attempt of ``stage``; logs at the first and then every minute."""
        now = self._clock()
        block = self._blocks.get(stage)
        if block is None or block.reason is not reason:
            block = self._blocks[stage] = _Block(
                reason, since=block.since if block else now, attempts=0
            )
            hint = fix_hint(reason, target)
            if self._gauge is not None:
                self._gauge.write_blocked(stage, reason.value, hint)
        block.attempts += 1
        if block.reported_at is not None and now - block.reported_at < REPORT_EVERY_S:
            return
        block.reported_at = now
        log.error(
            "%s stage stalled, nothing is committed past the unwritten data: %s",
            stage,
            fix_hint(reason, target),
            extra={
                "stage": stage,
                "reason": reason.value,
                "bucket": target.bucket,
                "url": target.url,
                "token": target.token,
                "why": why,
                "blocked_s": round(now - block.since, 1),
                "attempts": block.attempts,
            },
        )

    def cleared(self, stage: str) -> None:
        """``stage``'s request went through: it is no longer blocked."""
        block = self._blocks.pop(stage, None)
        if block is None:
            return
        if self._gauge is not None:
            self._gauge.write_blocked(stage, None)
        log.warning(
            "%s stage resumed: InfluxDB accepts its requests again",
            stage,
            extra={
                "stage": stage,
                "was": block.reason.value,
                "blocked_s": round(self._clock() - block.since, 1),
                "attempts": block.attempts,
            },
        )

    def reason(self, stage: str) -> BlockReason | None:
        block = self._blocks.get(stage)
        return block.reason if block else None
