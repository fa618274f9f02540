"""Ordered acknowledgements: a message is acked to the broker only after Kafka has it, in
the order the messages arrived.

MQTT wants acks in arrival order, but Kafka completes produces per partition, so a later
message may be confirmed first. The window holds every delivery of the current connection
in arrival order and, when one completes, releases the contiguous completed prefix: those
(and only those) are safe to ack.

A reconnect starts a new *generation*: the broker redelivers whatever was not acked, so the
previous connection's pending deliveries are dropped (never acked) and their late Kafka
confirmations are ignored. Pure logic; the caller does the acking and the counting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class Delivery:
    """One received message waiting for Kafka (``qos`` 0 needs no ack but keeps its place)."""

    generation: int
    mid: int
    qos: int
    received_at: float
    done: bool = False


class AckWindow:
    """In-flight deliveries of the current MQTT connection, oldest first."""

    __slots__ = ("_pending", "generation")

    def __init__(self) -> None:
        self._pending: deque[Delivery] = deque()
        self.generation = 0

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, generation: int, mid: int, qos: int, received_at: float) -> Delivery:
        """Track a new delivery of the current connection (``reset`` first on a new one)."""
        if generation != self.generation:
            raise StaleGenerationError(generation, self.generation)
        delivery = Delivery(generation, mid, qos, received_at)
        self._pending.append(delivery)
        return delivery

    def complete(self, delivery: Delivery) -> list[Delivery]:
        """Mark ``delivery`` as in Kafka; return the deliveries now safe to ack, in order."""
        if delivery.generation != self.generation:
            return []
        delivery.done = True
        ready: list[Delivery] = []
        pending = self._pending
        while pending and pending[0].done:
            ready.append(pending.popleft())
        return ready

    def reset(self, generation: int) -> list[Delivery]:
        """Switch to ``generation`` (a new connection); return the dropped pending deliveries."""
        dropped = list(self._pending)
        self._pending.clear()
        self.generation = generation
        return dropped


class StaleGenerationError(ValueError):
    """A delivery from a connection other than the current one was offered to the window."""

    def __init__(self, got: int, current: int) -> None:
        super().__init__(f"delivery from connection {got}, window is on connection {current}")
