"""Acceptance, end to end from ``kotaflow simulate`` with faults: simulator -> Mosquitto ->
``kotaflow bridge`` -> Kafka -> ``kotaflow process`` -> InfluxDB, every part a real process.
Every valid reading the simulator's manifest promises is stored exactly once; faulty and
duplicate messages add nothing. Every refused value is on the run's dead-letter topic with
the reason the manifest gives it, and no dead letter refuses a valid one."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from benchmarks.e2e_bench import E2ERun, measure
from devices.simulator.manifest import payload_hash
from devices.simulator.stream import DUPLICATE, OK
from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

FAULTS = "malformed=0.03,out_of_range=0.03,duplicate=0.03,skew=0.02"
"""Faults whose readings must never be stored (late readings land outside the run's window
the count looks at, so they are left to the processors' own tests)."""
DEAD_LETTERED = ("malformed", "out_of_range", "skew")
"""The fault kinds whose values are refused (duplicates are accepted and stored once)."""


async def test_simulated_faults_are_dead_lettered_and_valid_readings_stored_exactly_once(
    stack: Settings,
) -> None:
    run = await measure(stack, rate=300.0, duration_s=8.0, faults=FAULTS, deadletters=True)
    kinds = run.summary["kinds"]
    assert run.expected > 0
    assert all(kinds[kind]["messages"] > 0 for kind in (*DEAD_LETTERED, "duplicate"))
    assert run.stored == run.expected, f"{run.stored} stored, {run.expected} valid sent"

    sent = _messages_by_payload(run)
    letters = _this_runs(run, sent)
    refused = _refused(letters)
    missing = [
        f"seq {m['seq']} ({m['kind']}/{m['variant']}, {m['topic']}): {v['metric']} {v['expect']}"
        for m in run.manifest
        for v in m["values"]
        if v["expect"] not in (OK, DUPLICATE)
        and not refused[m["payload_b2b"]] & {(v["expect"], v["metric"]), (v["expect"], None)}
    ]
    assert not missing, f"{len(missing)} refused values not dead-lettered: {missing[:10]}"
    wrong = [_describe(letter) for letter in letters if not _expected(letter, sent)]
    assert not wrong, f"{len(wrong)} dead letters the manifest does not expect: {wrong[:10]}"
    assert {sent[payload_hash(letter.payload)][0]["kind"] for letter in letters} == set(
        DEAD_LETTERED
    )


def _messages_by_payload(run: E2ERun) -> dict[str, list[dict[str, Any]]]:
    """Manifest messages by payload hash (a list: two truncated payloads may be equal)."""
    sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in run.manifest:
        sent[message["payload_b2b"]].append(message)
    return sent


def _this_runs(run: E2ERun, sent: dict[str, list[dict[str, Any]]]) -> list[DeadLetter]:
    """The run's dead letters: its bridge also gets other pipelines' traffic on the broker
    (dead-lettered as unknown devices), but only the run's topics carry its tag."""
    return [
        letter
        for letter in run.deadletters
        if run.tag in str(letter.source.get("mqtt_topic", ""))
        or payload_hash(letter.payload) in sent
    ]


def _refused(letters: list[DeadLetter]) -> dict[str, set[tuple[str, str | None]]]:
    """Payload hash -> {(reason, metric or None for the whole message)}."""
    refused: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for letter in letters:
        refused[payload_hash(letter.payload)].add((letter.reason.value, letter.metric))
    return refused


def _expected(letter: DeadLetter, sent: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether a message the run sent, on the letter's MQTT topic, must be refused this way:
    the named value with this reason, or (no metric named) every value of the message."""
    for message in sent.get(payload_hash(letter.payload), []):
        if message["topic"] != letter.source.get("mqtt_topic"):
            continue
        values = [v for v in message["values"] if letter.metric in (None, v["metric"])]
        if values and all(v["expect"] == letter.reason.value for v in values):
            return True
    return False


def _describe(letter: DeadLetter) -> str:
    topic = letter.source.get("mqtt_topic")
    return f"{letter.stage} {letter.reason.value} {letter.metric} on {topic}: {letter.message}"
