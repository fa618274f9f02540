"""The outbox workers: deliver queued messages, one independent worker per destination.

A destination is a receiver (webhook, e-mail, ...) or a sink (``_kafka``: the
``kotaflow.alerts`` topic; ``_influxdb``: the ``alerts`` measurement; ``_deadletter``). Each
worker takes its destination's oldest undelivered messages in order, delivers them, and
marks them sent. A failure that may pass (no answer, 5xx, 429) is retried with exponential
backoff and jitter (``Retry-After`` honoured) without limit: the message stays on disk until
it is delivered, and only its own destination waits. A permanent refusal (other 4xx) is
marked ``failed``, logged, and kept for inspection (``kotaflow alerts outbox``); the queue
moves on. Each evaluator process delivers only the messages of its own Kafka partitions
(``owned``), so processes sharing a state file never send one message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from kotaflow.alerting_settings import Language
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels import Channel, DeliveryError
from processors.alerting.metrics import AlertMetrics
from processors.alerting.state_store import AlertStore, OutboxItem
from processors.alerting.templates import AckLink, render_group
from processors.runtime.retry import Backoff

log = logging.getLogger("kotaflow.alerting.dispatch")

IDLE_POLL_S = 1.0
"""Look at the queue this often even when nobody wakes the worker (other processes)."""


class Destination(Protocol):
    name: str
    batch_size: int

    async def deliver(self, items: Sequence[OutboxItem]) -> None:
        """Deliver every item, or raise :class:`DeliveryError` (none counts as delivered)."""


class ReceiverDestination:
    """A notification receiver: renders the event in the receiver's language, then sends.

    Its batch is one message: a single event, or a group (a storm) rendered as one."""

    batch_size = 1

    def __init__(
        self,
        name: str,
        channel: Channel,
        language: Language,
        device_names: Mapping[str, str],
        dashboard_url: str | None,
        ack_link: AckLink | None = None,
    ) -> None:
        self.name = name
        self._channel = channel
        self._language = language
        self._names = device_names
        self._dashboard_url = dashboard_url
        self._ack_link = ack_link

    async def deliver(self, items: Sequence[OutboxItem]) -> None:
        events = [AlertEvent.from_json(item.payload) for item in items]
        if not events:
            return
        message = render_group(
            events, self._language, self._names, self._dashboard_url, self._ack_link
        )
        await self._channel.send(events[0], message, events if len(events) > 1 else ())


class Dispatcher:
    def __init__(
        self,
        store: AlertStore,
        destinations: Sequence[Destination],
        backoff: Backoff,
        clock: Callable[[], float] = time.time,
        on_delivered: Callable[[Destination, Sequence[OutboxItem], int], None] | None = None,
        owned: Callable[[], set[int] | None] = lambda: None,
        metrics: AlertMetrics | None = None,
    ) -> None:
        self._store = store
        self._destinations = list(destinations)
        self._backoff = backoff
        self._clock = clock
        self._wakeups = {d.name: asyncio.Event() for d in self._destinations}
        self._on_delivered = on_delivered
        self._owned = owned
        self._metrics = metrics or AlertMetrics()

    def wake(self) -> None:
        """New messages were queued: look now instead of at the next idle poll."""
        for event in self._wakeups.values():
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            for destination in self._destinations:
                group.create_task(self._worker(destination, stop), name=destination.name)

    async def _worker(self, destination: Destination, stop: asyncio.Event) -> None:
        wakeup = self._wakeups[destination.name]
        while not stop.is_set():
            wakeup.clear()
            now_ms = int(self._clock() * 1000)
            items = self._store.next_batch(
                destination.name, destination.batch_size, self._owned(), now_ms
            )
            if not items:
                held = self._store.next_hold_ms(destination.name, now_ms)
                wait_s = IDLE_POLL_S if held is None else (held - now_ms) / 1000
                await _wait_any(wakeup, stop, min(IDLE_POLL_S, wait_s))
                continue
            if items[0].next_ms > now_ms:
                await _wait_any(None, stop, (items[0].next_ms - now_ms) / 1000)
                continue
            await self._attempt(destination, items, now_ms)

    async def _attempt(
        self, destination: Destination, items: Sequence[OutboxItem], now_ms: int
    ) -> None:
        head = items[0]
        try:
            await destination.deliver(items)
        except DeliveryError as err:
            if err.permanent:
                log.error(
                    "delivery refused, not retried",
                    extra={
                        "destination": destination.name,
                        "event": head.event_id,
                        "err": str(err),
                    },
                )
                for item in items:
                    self._store.failed(item.id, now_ms, str(err))
                self._metrics.notified(destination.name, "failed", len(items))
                return
            self._retry(destination, head, str(err), err.retry_after_s, now_ms)
            return
        except Exception as err:  # a bug in one channel must not stop the others
            log.exception("delivery crashed", extra={"destination": destination.name})
            self._retry(destination, head, f"{type(err).__name__}: {err}", None, now_ms)
            return
        done_ms = int(self._clock() * 1000)
        self._store.delivered([item.id for item in items], done_ms)
        self._metrics.notified(destination.name, "sent", len(items))
        if self._on_delivered is not None:
            self._on_delivered(destination, items, done_ms)

    def _retry(
        self,
        destination: Destination,
        head: OutboxItem,
        error: str,
        retry_after_s: float | None,
        now_ms: int,
    ) -> None:
        self._metrics.notified(destination.name, "retry", 1)
        delay_s = self._backoff.delay(head.attempts + 1, retry_after_s, random.random())
        self._store.retry_later(head.id, now_ms + int(delay_s * 1000), error)
        log.warning(
            "delivery failed, will retry",
            extra={
                "destination": destination.name,
                "event": head.event_id,
                "attempt": head.attempts + 1,
                "retry_in_s": round(delay_s, 2),
                "err": error,
            },
        )


async def _wait_any(event: asyncio.Event | None, stop: asyncio.Event, timeout_s: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if event is not None:
        waiters.append(asyncio.ensure_future(event.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(0.0, timeout_s), return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
