"""Ordered acknowledgements: a QoS 1 message is acked to the broker only after Kafka has
it, in the order the messages arrived.

MQTT wants acks in arrival order, but Kafka completes produces per partition, so a later
message may be confirmed first. The window numbers every QoS 1 delivery of the connection
(its *sequence number*) and, when some complete, releases the contiguous completed prefix:
those (and only those) are safe to ack. QoS 0 deliveries need no ack and never enter it.

It is built for the bridge's hot path: per delivery it stores two bytes of packet id and
later one "done" byte in rings of ``bytearray``; finding the completed prefix and building
its PUBACK packets are slice operations, so acking thousands of messages costs a few
C-level copies, not a Python loop over each of them.

A reconnect (:meth:`AckWindow.reset`) drops the pending deliveries: the broker redelivers
whatever was not acked, and late Kafka confirmations of dropped sequence numbers are
ignored. Pure logic; the caller does the sending and the counting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

_PUBACK_HEAD = b"\x40\x02"


class AckWindow:
    """QoS 1 deliveries of the current MQTT connection waiting for Kafka, oldest first."""

    __slots__ = ("_cap", "_done", "_head", "_hi", "_lo", "_mask", "_next", "_times")

    def __init__(self, capacity: int = 1 << 14) -> None:
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._cap = capacity
        self._mask = capacity - 1
        self._done = bytearray(capacity)
        self._hi = bytearray(capacity)
        self._lo = bytearray(capacity)
        self._head = 0  # oldest unacked sequence number
        self._next = 0  # the next delivery's sequence number
        self._times: deque[tuple[int, float]] = deque()  # (first seq, receive time) per burst

    def __len__(self) -> int:
        return self._next - self._head

    def open(self, mid: int) -> int:
        """Track a QoS 1 delivery; returns its sequence number for :meth:`complete`."""
        seq = self._next
        if seq - self._head >= self._cap:
            self._grow()
        slot = seq & self._mask
        self._hi[slot] = mid >> 8
        self._lo[slot] = mid & 0xFF
        self._next = seq + 1
        return seq

    def mark_received(self, received_at: float) -> None:
        """The deliveries opened from now on arrived at ``received_at`` (monotonic)."""
        times = self._times
        if not times or times[-1][0] != self._next:
            times.append((self._next, received_at))

    def complete(self, seqs: Iterable[int]) -> tuple[bytes, int, float | None]:
        """Mark ``seqs`` as in Kafka. Returns the PUBACK packets of the deliveries now safe
        to ack (in arrival order, one ``bytes``), how many, and when the oldest of them was
        received (None when nothing became ackable)."""
        done = self._done
        mask = self._mask
        head = self._head
        for seq in seqs:
            if seq >= head:  # older ones were dropped by a reset
                done[seq & mask] = 1
        start = head & mask
        stop = done.find(0, start)
        if stop == -1:  # done up to the end of the ring: continue from its start
            wrapped = done.find(0, 0, start)
            count = self._cap - start + (start if wrapped == -1 else wrapped)
        else:
            count = stop - start
        count = min(count, self._next - head)
        if count == 0:
            return b"", 0, None
        packets = self._pubacks(start, count)
        self._clear(start, count)
        self._head = head + count
        return packets, count, self._oldest_time(head)

    def reset(self) -> int:
        """A new connection: drop every pending delivery (the broker redelivers them).
        Returns how many were dropped."""
        dropped = len(self)
        self._done[:] = bytes(self._cap)
        self._head = self._next
        self._times.clear()
        return dropped

    # -- internals ---------------------------------------------------------------------

    def _pubacks(self, start: int, count: int) -> bytes:
        out = bytearray(4 * count)
        first = min(count, self._cap - start)
        out[0::4] = _PUBACK_HEAD[:1] * count
        out[1::4] = _PUBACK_HEAD[1:] * count
        out[2 : 4 * first : 4] = self._hi[start : start + first]
        out[3 : 4 * first : 4] = self._lo[start : start + first]
        if first < count:
            rest = count - first
            out[4 * first + 2 :: 4] = self._hi[:rest]
            out[4 * first + 3 :: 4] = self._lo[:rest]
        return bytes(out)

    def _clear(self, start: int, count: int) -> None:
        first = min(count, self._cap - start)
        self._done[start : start + first] = bytes(first)
        if first < count:
            self._done[: count - first] = bytes(count - first)

    def _oldest_time(self, head: int) -> float | None:
        """Receive time of delivery ``head``; forgets the bursts acked in full."""
        times = self._times
        while len(times) > 1 and times[1][0] <= head:
            times.popleft()
        oldest = times[0][1] if times and times[0][0] <= head else None
        while len(times) > 1 and times[1][0] <= self._head:
            times.popleft()
        return oldest

    def _grow(self) -> None:
        """Double the rings, keeping each pending delivery at its sequence number's slot."""
        old_mask, cap = self._mask, self._cap * 2
        done, hi, lo = bytearray(cap), bytearray(cap), bytearray(cap)
        for seq in range(self._head, self._next):
            old, new = seq & old_mask, seq & (cap - 1)
            done[new], hi[new], lo[new] = self._done[old], self._hi[old], self._lo[old]
        self._cap, self._mask = cap, cap - 1
        self._done, self._hi, self._lo = done, hi, lo
