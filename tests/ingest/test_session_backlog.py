"""The session backlog ends at the bridge's marker: before it exempt, after it live."""

from __future__ import annotations

import asyncio
import time

from ingest.fastpaho import Arrival
from ingest.metrics import BridgeMetrics
from ingest.mqtt import BACKLOG, LIVE, MARKER, MqttIntake, marker_topic
from kotaflow.mqtt import MqttAccess
from kotaflow.settings import BridgeSettings


def _arrival(mid: int, topic: str, payload: bytes = b"{}") -> Arrival:
    return (mid, 1, False, False, topic.encode(), payload, None)


def _intake() -> MqttIntake:
    loop = asyncio.new_event_loop()
    access = MqttAccess("127.0.0.1", 1, 30)
    return MqttIntake(access, BridgeSettings(), loop, lambda: None, BridgeMetrics())


def _open(intake: MqttIntake, nonce: bytes) -> None:
    intake._marker = (marker_topic(BridgeSettings().client_id).encode(), nonce, 1)
    intake._backlog_since = time.monotonic()


def test_everything_before_our_marker_is_backlog_and_after_it_live() -> None:
    intake = _intake()
    _open(intake, b"ours")
    marker = marker_topic(BridgeSettings().client_id)
    device = "kotaflow/d1/telemetry"
    intake._on_arrivals([_arrival(1, device), _arrival(2, device)], 0.0)
    stale, ours = _arrival(3, marker, b"older"), _arrival(5, marker, b"ours")
    intake._on_arrivals([stale, _arrival(4, device), ours, _arrival(6, device)], 0.0)
    intake._on_arrivals([_arrival(7, device)], 0.0)
    kinds = [(kind, [a[0] for a in arrivals]) for _, _, arrivals, kind in intake.inbox]
    assert kinds == [
        (BACKLOG, [1, 2]),
        (MARKER, [3]),  # a redelivered marker of an earlier connection: acked, not forwarded
        (BACKLOG, [4]),
        (MARKER, [5]),
        (LIVE, [6]),
        (LIVE, [7]),
    ]
    assert intake._marker is None


def test_without_a_marker_everything_is_live() -> None:
    intake = _intake()
    intake._on_arrivals([_arrival(1, "kotaflow/d1/telemetry")], 0.0)
    assert [kind for *_, kind in intake.inbox] == [LIVE]
