"""Bad input at the edge lands in the dead-letter topic with a reason, never in raw, never lost."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from bridge_support import (
    BridgeRun,
    Publisher,
    TopicReader,
    free_port,
    ids_of,
    scrape,
    wait_for_log,
)

from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

FLOOD = 60


@pytest.mark.timeout(240)
async def test_oversize_unknown_topic_and_rate_limited_are_dead_lettered(
    bridge_run: BridgeRun,
) -> None:
    run = bridge_run
    port = free_port()
    run.spawn_bridge(1, metrics_port=port, max_payload_bytes="1000", rate_per_s="1", rate_burst="5")
    wait_for_log(run, 1, "MQTT subscribed")
    big, flood, quiet = run.device(1), run.device(2), run.device(3)
    unknown_topic = f"application/t{run.rid}/device/not-a-dev-eui/event/up"
    messages = [(f"kotaflow/{big}/telemetry", b'{"id":"big","pad":"' + b"x" * 2000 + b'"}')]
    messages += [(unknown_topic, json.dumps({"id": f"unknown:{i}"}).encode()) for i in range(3)]
    messages += [
        (f"kotaflow/{flood}/telemetry", json.dumps({"id": f"{flood}:{i}"}).encode())
        for i in range(FLOOD)
    ]
    messages += [
        (f"kotaflow/{quiet}/telemetry", json.dumps({"id": f"{quiet}:{i}"}).encode())
        for i in range(3)
    ]
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    publisher.publish(messages)
    publisher.finish()

    mine = (big, flood, quiet)
    async with (
        TopicReader(run.settings, run.raw_topic) as raw,
        TopicReader(run.settings, run.dead_topic) as dead,
    ):

        def dead_letters() -> list[DeadLetter]:
            found = [DeadLetter.from_value(value) for _, value, _, _ in dead.records]
            return [d for d in found if d.device in mine or d.reason is Reason.UNKNOWN_TOPIC]

        def flood_accounted() -> bool:
            limited = [d for d in dead_letters() if d.reason is Reason.RATE_LIMITED]
            forwarded = [i for i in ids_of(raw.records) if i.startswith(f"{flood}:")]
            return len(limited) + len(forwarded) >= FLOOD

        def everything_in() -> bool:
            quiet_in = all(f"{quiet}:{i}" in ids_of(raw.records) for i in range(3))
            reasons = [d.reason for d in dead_letters()]
            return (
                quiet_in
                and Reason.OVERSIZE in reasons
                and reasons.count(Reason.UNKNOWN_TOPIC) >= 3
                and flood_accounted()
            )

        deadline = time.monotonic() + 120
        while not everything_in():
            assert time.monotonic() < deadline, f"dead letters so far: {dead_letters()}"
            await raw.poll()
            await dead.poll()
        letters = dead_letters()

    oversize = [d for d in letters if d.reason is Reason.OVERSIZE]
    assert len(oversize) == 1
    assert oversize[0].device == big
    assert oversize[0].payload == messages[0][1][:1024]  # compact: a prefix, length, hash
    assert oversize[0].source["payload_bytes"] == len(messages[0][1])
    assert oversize[0].source["payload_sha256"] == hashlib.sha256(messages[0][1]).hexdigest()
    assert oversize[0].stage == "bridge"
    unknown = [d for d in letters if d.reason is Reason.UNKNOWN_TOPIC]
    assert {d.source["mqtt_topic"] for d in unknown} == {unknown_topic}
    limited = [d for d in letters if d.reason is Reason.RATE_LIMITED]
    forwarded = [i for i in ids_of(raw.records) if i.startswith(f"{flood}:")]
    assert 5 <= len(forwarded) < FLOOD
    assert sorted(
        forwarded + [json.loads(d.payload)["id"] for d in limited],
        key=lambda i: int(i.split(":")[1]),
    ) == [f"{flood}:{i}" for i in range(FLOOD)]
    assert not any(i.startswith(("big", "unknown")) for i in ids_of(raw.records))
    metrics = scrape(port)
    assert metrics['kotaflow_bridge_deadlettered_total{reason="rate_limited"}'] >= len(limited)
