"""The ack window acks only the contiguous completed prefix, in arrival order."""

from __future__ import annotations

import random

import pytest

from ingest.acks import AckWindow


def _pubacks(*mids: int) -> bytes:
    return b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)


def test_out_of_order_completion_acks_in_arrival_order() -> None:
    window = AckWindow()
    first, second, third = (window.open(mid) for mid in (1, 2, 3))
    assert window.complete([third]) == (b"", 0, None)
    assert window.complete([second]) == (b"", 0, None)
    packets, count, _ = window.complete([first])
    assert (packets, count) == (_pubacks(1, 2, 3), 3)
    assert len(window) == 0


def test_a_gap_holds_back_later_acks() -> None:
    window = AckWindow()
    a, b, c, d = (window.open(mid) for mid in (10, 11, 12, 13))
    assert window.complete([a])[:2] == (_pubacks(10), 1)
    assert window.complete([c, d])[1] == 0
    assert window.complete([b])[:2] == (_pubacks(11, 12, 13), 3)


def test_reset_drops_pending_and_ignores_their_late_completions() -> None:
    window = AckWindow()
    old = [window.open(mid) for mid in (1, 2)]
    assert window.reset() == 2
    assert len(window) == 0
    assert window.complete(old)[1] == 0
    new = window.open(1)
    assert window.complete([new])[:2] == (_pubacks(1), 1)


def test_qos0_placeholders_are_ignored() -> None:
    window = AckWindow()
    seq = window.open(7)
    assert window.complete([-1, seq, -1])[:2] == (_pubacks(7), 1)


def test_wraps_around_the_ring_and_grows_past_its_capacity() -> None:
    window = AckWindow(capacity=8)
    rng = random.Random(5)
    mid = 0
    acked: list[bytes] = []
    opened: list[int] = []
    pending: list[int] = []
    for _ in range(60):
        for _ in range(rng.randint(0, 12)):  # sometimes more than the capacity at once
            mid = mid % 65535 + 1
            opened.append(mid)
            pending.append(window.open(mid))
        rng.shuffle(pending)
        done, pending = pending[: len(pending) // 2], pending[len(pending) // 2 :]
        acked.append(window.complete(done)[0])
    acked.append(window.complete(pending)[0])
    assert b"".join(acked) == _pubacks(*opened)
    assert len(window) == 0


def test_reports_when_the_oldest_acked_delivery_arrived() -> None:
    window = AckWindow()
    window.mark_received(100.0)
    a, b = window.open(1), window.open(2)
    window.mark_received(105.0)
    c = window.open(3)
    assert window.complete([a]) == (_pubacks(1), 1, 100.0)
    assert window.complete([c]) == (b"", 0, None)
    assert window.complete([b]) == (_pubacks(2, 3), 2, 100.0)
    window.mark_received(110.0)
    d = window.open(4)
    assert window.complete([d])[2] == 110.0


def test_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        AckWindow(capacity=12)
