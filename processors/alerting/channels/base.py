"""The channel interface and the HTTP error policy the HTTP channels share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from kotaflow.wire.alerts import AlertEvent
from processors.alerting.templates import Message
from processors.runtime.retry import parse_retry_after, retryable


class DeliveryError(Exception):
    """A delivery failed. ``permanent``: retrying the same message cannot succeed."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    async def send(
        self, event: AlertEvent, message: Message, group: Sequence[AlertEvent] = ()
    ) -> None:
        """Deliver once, or raise :class:`DeliveryError`. ``group``: every event of a
        grouped message (``message`` already lists them), empty for a single event."""


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
    what: str,
) -> httpx.Response:
    """POST JSON; a refused or failed request becomes a classified :class:`DeliveryError`.

    No answer, 408, 429 and 5xx are retried (``Retry-After`` honoured); other 4xx are
    permanent: the receiver will refuse this message every time.
    """
    try:
        response = await http.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as err:
        raise DeliveryError(f"{what}: {type(err).__name__}: {err}") from err
    if response.is_success:
        return response
    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
    raise DeliveryError(
        f"{what}: HTTP {response.status_code}: {response.text[:300]}",
        permanent=not retryable(response.status_code),
        retry_after_s=retry_after,
    )
