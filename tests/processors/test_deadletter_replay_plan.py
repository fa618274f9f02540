"""What a replay would do with each dead letter, judged with today's files (no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from devices.fleet import load_fleet
from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason
from processors.deadletters.reader import LetterFilter, StoredLetter, parse_id, parse_time, stats
from processors.deadletters.replay import REPLAY_HEADER, Action, plan

RX_MS = 1_764_000_000_000


def stored(letter: DeadLetter, ident: str = "0:7") -> StoredLetter:
    return StoredLetter(ident, letter, letter.at_ms)


def validate_letter(
    device: str, payload: bytes, reason: Reason = Reason.UNKNOWN_DEVICE
) -> DeadLetter:
    return DeadLetter(
        stage="validate",
        reason=reason,
        message="device or metric is not in the registry",
        payload=payload,
        device=device,
        source={
            "kafka_topic": "kotaflow.raw",
            "partition": 0,
            "offset": 3,
            "mqtt_topic": f"kotaflow/{device}/telemetry",
            "rx_ms": RX_MS,
        },
        at_ms=RX_MS + 5_000,
    )


def test_a_fixed_letter_is_replayed_with_its_receive_time() -> None:
    settings = Settings()
    letter = validate_letter("rtg-wx-01", b'{"temperature": 20.5}')
    (p,) = plan(settings, load_fleet(), [stored(letter)])
    assert p.action is Action.REPLAY
    assert p.readings == 1
    assert p.record is not None
    assert p.record.topic == settings.kafka.topics.raw
    assert p.record.timestamp_ms == RX_MS
    headers = dict(p.record.headers)
    assert headers["kf.rx_ms"] == str(RX_MS).encode()
    assert headers[REPLAY_HEADER] == f"{settings.kafka.topics.deadletter}/0:7".encode()


def test_a_letter_still_refused_is_not_sent_unless_forced() -> None:
    letter = validate_letter("not-registered-99", b'{"temperature": 20.5}')
    (p,) = plan(Settings(), load_fleet(), [stored(letter)])
    assert p.action is Action.STILL_REFUSED
    assert p.refusals
    assert p.refusals[0].startswith("unknown_device")
    (forced,) = plan(Settings(), load_fleet(), [stored(letter)], force=True)
    assert forced.action is Action.REPLAY


def test_an_already_replayed_letter_is_skipped_unless_asked_again() -> None:
    letter = stored(validate_letter("rtg-wx-01", b'{"temperature": 20.5}'))
    (p,) = plan(Settings(), load_fleet(), [letter], already={"0:7"})
    assert p.action is Action.ALREADY_REPLAYED
    (again,) = plan(Settings(), load_fleet(), [letter], already={"0:7"}, again=True)
    assert again.action is Action.REPLAY


def test_a_letter_without_topic_cannot_be_rebuilt() -> None:
    letter = DeadLetter("validate", Reason.BAD_ENVELOPE, "missing header kf.v", b"x")
    (p,) = plan(Settings(), load_fleet(), [stored(letter)])
    assert p.action is Action.CANNOT
    assert "MQTT topic" in p.note


def test_a_readings_letter_goes_back_on_the_readings_topic() -> None:
    settings = Settings()
    record = {
        "v": 2,
        "device": "rtg-wx-01",
        "type": "weather",
        "kecamatan": "Ruteng",
        "units": {"temperature": "Cel"},
        "ts_ms": RX_MS,
        "values": {"temperature": 20.0},
    }
    source = {"kafka_topic": settings.kafka.topics.readings}
    payload = json.dumps(record).encode()
    letter = DeadLetter("store", Reason.BAD_ENVELOPE, "400", payload, "rtg-wx-01", source=source)
    (p,) = plan(settings, load_fleet(), [stored(letter)])
    assert p.record is not None
    assert p.record.topic == settings.kafka.topics.readings


def test_filters_ids_times_and_stats() -> None:
    a = stored(validate_letter("d1", b"{}"), "0:1")
    b = stored(validate_letter("d2", b"{}", Reason.NOT_JSON), "1:1")
    assert [s.id for s in (a, b) if LetterFilter(reasons=frozenset({"not_json"})).matches(s)] == [
        "1:1"
    ]
    assert LetterFilter(devices=frozenset({"d1"})).matches(a)
    assert not LetterFilter(since_ms=RX_MS + 10_000).matches(a)
    assert stats([a, b])["by_reason"] == {"unknown_device": 1, "not_json": 1}
    assert parse_id("3:1207") == (3, 1207)
    with pytest.raises(ValueError, match="partition"):
        parse_id("3-1207")
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == int(datetime(2026, 12, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)
    assert parse_time("2026-12-04T10:00", now) == parse_time("2h", now)


def test_several_letters_of_one_message_send_it_once() -> None:
    payload = b'{"temperature": 20.5, "humidity": 80}'
    first = stored(validate_letter("rtg-wx-01", payload), "0:7")
    second = stored(validate_letter("rtg-wx-01", payload), "0:8")  # same source offset
    plans = plan(Settings(), load_fleet(), [first, second])
    assert [p.action for p in plans] == [Action.REPLAY, Action.REPLAY]
    assert plans[0].record is not None
    assert plans[1].record is None
    assert plans[1].note == "same message as 0:7"


@pytest.mark.parametrize("command", ["list", "stats", "replay"])
def test_a_misspelt_reason_is_refused_before_reading_anything(command: str) -> None:
    from typer.testing import CliRunner

    from kotaflow.cli import app

    result = CliRunner().invoke(app, ["deadletter", command, "--reason", "unknown_devise"])
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # unwrap the error box
    assert "unknown reason 'unknown_devise': did you mean 'unknown_device'?" in said


def test_list_limit_must_be_at_least_one() -> None:
    from typer.testing import CliRunner

    from kotaflow.cli import app

    result = CliRunner().invoke(app, ["deadletter", "list", "--limit", "0"])
    assert result.exit_code == 2  # --limit 0 listed every letter (letters[-0:])
