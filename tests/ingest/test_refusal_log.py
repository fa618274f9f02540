"""Refusals are logged once per interval with counts, not once per message."""

from __future__ import annotations

import logging

import pytest

from ingest.refusals import RefusalLog
from kotaflow.wire.reasons import Reason


def test_a_flood_of_refusals_gives_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.refusals")
    refusals = RefusalLog(logger, interval_s=10.0)
    caplog.set_level(logging.WARNING, logger="tests.refusals")
    lines = 0
    for i in range(5_000):
        refusals.note(Reason.RATE_LIMITED, b"flood")
        if i % 7 == 0:
            refusals.note(Reason.OVERSIZE, b"big")
        lines += refusals.flush_if_due(now=i / 1000)  # 5 s of refusals
    assert lines == 1  # the first, at once; the rest wait for the interval
    assert refusals.flush_if_due(now=10.5)
    first, second = (r for r in caplog.records if r.msg == "dead-lettered at the edge")
    assert first.by_reason == {"rate_limited": 1, "oversize": 1}  # type: ignore[attr-defined]
    assert second.by_reason["rate_limited"] == 4_999  # type: ignore[attr-defined]
    assert list(second.top_devices) == ["flood", "big"]  # type: ignore[attr-defined]
    assert not refusals.flush_if_due(now=30.0)  # nothing refused since: silence
