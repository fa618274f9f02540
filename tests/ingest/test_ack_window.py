"""The ack window acks only the contiguous completed prefix, in arrival order."""

from __future__ import annotations

import pytest

from ingest.acks import AckWindow, StaleGenerationError


def _open(window: AckWindow, mids: list[int]) -> list:  # type: ignore[type-arg]
    return [window.open(window.generation, mid, 1, 0.0) for mid in mids]


def test_out_of_order_completion_acks_in_arrival_order() -> None:
    window = AckWindow()
    first, second, third = _open(window, [1, 2, 3])
    assert window.complete(third) == []
    assert window.complete(second) == []
    assert [d.mid for d in window.complete(first)] == [1, 2, 3]
    assert len(window) == 0


def test_a_gap_holds_back_later_acks() -> None:
    window = AckWindow()
    a, b, c, d = _open(window, [10, 11, 12, 13])
    assert [x.mid for x in window.complete(a)] == [10]
    assert window.complete(c) == []
    assert window.complete(d) == []
    assert [x.mid for x in window.complete(b)] == [11, 12, 13]


def test_reset_drops_pending_and_ignores_their_late_completions() -> None:
    window = AckWindow()
    old = _open(window, [1, 2])
    dropped = window.reset(window.generation + 1)
    assert dropped == old
    assert window.complete(old[0]) == []
    (new,) = _open(window, [1])
    assert [x.mid for x in window.complete(new)] == [1]


def test_delivery_from_another_generation_is_refused() -> None:
    window = AckWindow()
    with pytest.raises(StaleGenerationError):
        window.open(window.generation + 1, 1, 1, 0.0)
