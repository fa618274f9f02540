"""Log redaction: a secret kotaflow knows of never reaches a log line, wherever it hides."""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from kotaflow.logs import redact, redact_settings, setup_logging
from kotaflow.settings import Settings

SECRET = "s3cret-Value-42"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """The root logger configured by setup_logging, writing to a buffer; restored after."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    setup_logging("INFO")
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:] = saved
    root.setLevel(level)


def test_a_registered_secret_is_masked_everywhere_in_a_record(output: io.StringIO) -> None:
    redact(SecretStr(SECRET))
    log = logging.getLogger("kotaflow.test")
    log.info("connecting with %s", SECRET, extra={"url": f"https://u:{SECRET}@h/", "n": 3})
    try:
        raise RuntimeError(f"refused: password {SECRET}")
    except RuntimeError:
        log.exception("failed")
    text = output.getvalue()
    assert SECRET not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["msg"] == "connecting with ***"
    assert first["url"] == "https://u:***@h/"
    assert first["n"] == 3
    assert "refused: password ***" in second["exc"]


def test_secrets_stay_masked_when_logging_is_set_up_again(output: io.StringIO) -> None:
    redact(SECRET)
    setup_logging("DEBUG")  # a command sets its level once settings are loaded
    buffer = io.StringIO()
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    logging.getLogger("kotaflow.test").warning(SECRET)
    assert SECRET not in buffer.getvalue()


def test_every_secret_in_the_settings_is_registered(output: io.StringIO) -> None:
    settings = Settings(
        mqtt={"password": "mqtt-pass-123"},  # type: ignore[arg-type]
        kafka={"sasl_password": "kafka-pass-456"},  # type: ignore[arg-type]
        alerting={"receivers": {"m": {"kind": "email", "host": "smtp.example.id",
                                      "sender": "a@example.id", "to": ["b@example.id"],
                                      "password": "smtp-pass-789"}}},  # type: ignore[arg-type]
    )  # fmt: skip
    redact_settings(settings)
    logging.getLogger("kotaflow.test").info("mqtt-pass-123 kafka-pass-456 smtp-pass-789")
    assert json.loads(output.getvalue())["msg"] == "*** *** ***"


def test_short_values_are_not_treated_as_secrets(output: io.StringIO) -> None:
    redact("abc")
    logging.getLogger("kotaflow.test").info("abc stays")
    assert json.loads(output.getvalue())["msg"] == "abc stays"


def test_an_extra_never_overwrites_the_log_level(output: io.StringIO) -> None:
    log = logging.getLogger("kotaflow.test")
    log.warning("alert fired", extra={"level": "Awas", "ts": 1, "logger": "x", "rule": "flood"})
    entry = json.loads(output.getvalue().splitlines()[-1])
    assert (entry["level"], entry["logger"], entry["msg"]) == (
        "warning",
        "kotaflow.test",
        "alert fired",
    )
    assert entry["ts"].endswith("Z")
    assert (entry["extra_level"], entry["extra_ts"], entry["rule"]) == ("Awas", 1, "flood")


def test_repeated_errors_are_let_through_once_per_interval_with_a_count(
    output: io.StringIO,
) -> None:
    """aiokafka's own logger goes through the same handler: its repeats collapse too."""
    from kotaflow.logs import REPEAT_INTERVAL_S

    log = logging.getLogger("aiokafka.conn")
    start = 1_000_000.0
    for i in range(4500):  # 20 s of connection errors at ~225 lines/s
        record = log.makeRecord(
            log.name,
            logging.ERROR,
            __file__,
            1,
            "Unable connect to node with id %s: %s",
            (i % 3, "[Errno 111] Connect call failed"),
            None,
        )
        record.created = start + i * 20 / 4500
        log.handle(record)
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    assert len(lines) == math.ceil(20 / REPEAT_INTERVAL_S)  # 2 lines, not 4,500
    assert lines[0]["msg"].startswith("Unable connect to node with id 0")
    assert "repeated" not in lines[0]
    assert sum(line.get("repeated", 0) for line in lines) + len(lines) <= 4500
    assert lines[1]["repeated"] > 2000


def test_different_messages_and_info_lines_are_never_collapsed(output: io.StringIO) -> None:
    log = logging.getLogger("kotaflow.test")
    for _ in range(3):
        log.info("stage started")
    log.warning("one thing")
    log.warning("another thing")
    logging.getLogger("kotaflow.other").warning("one thing")
    assert len(output.getvalue().splitlines()) == 6
