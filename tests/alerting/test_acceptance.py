"""Acceptance: the evaluator on real Kafka, notifying a real SMTP server (STARTTLS + AUTH) and
a real HTTP webhook receiver on loopback.

Readings are produced to a per-test readings topic (the validate stage's output format), so
other activity on the shared stack cannot interfere; the end-to-end test from an MQTT publish
lives in ``test_end_to_end.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from deploy.local.kafka_topics import run_sync
from kotaflow.alert_routes import DefaultRoute
from kotaflow.alerting_settings import AlertingSettings, WebhookReceiver
from kotaflow.cli import app as cli_app
from kotaflow.settings import Settings
from kotaflow.wire.alerts import AlertEvent
from kotaflow.wire.deadletter import DeadLetter
from kotaflow.wire.reasons import Reason
from processors.alerting.state_store import AlertStore
from tests.alerting.conftest import (
    HttpReceiver,
    SmtpServer,
    await_for,
    mail_receiver,
    own_topics,
    producer,
    running,
)
from tests.alerting.helpers import reading, write_rules
from tests.support.isolated_kafka import delete_topics

pytestmark = pytest.mark.services

RULES = """
version: 1
rules:
  - name: sungai
    kind: threshold
    title: {id: Tinggi muka air sungai, en: River level}
    metric: water_level
    scope: {types: [river_level]}
    levels:
      - {name: Siaga, at_least: 250, clear_below: 240, severity: major}
    repeat: 1d
"""


@pytest.fixture
def alert_settings(
    stack: Settings, tmp_path: Path, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> Iterator[Settings]:
    topics, wanted = own_topics(stack, "alert")
    uid = topics.readings.rsplit(".", 1)[1]
    alerting = AlertingSettings(
        rules_file=write_rules(tmp_path, RULES),
        state_dir=tmp_path / "state",
        group_id=f"test-alert-{uid}",
        tick_s=0.2,
        poll_timeout_ms=50,
        write_influx=False,
        retry_initial_s=0.1,
        retry_max_s=2.0,  # a fresh broker may refuse the first sends: retry soon after
        default_route=DefaultRoute(group_window=timedelta(0)),  # storms: test_office.py
        receivers={
            "hook": WebhookReceiver(kind="webhook", url=f"{http_receiver.url}/hook"),
            "mail": mail_receiver(smtp_server),
        },
    )
    kafka = stack.kafka.model_copy(update={"topics": topics})
    try:
        yield stack.model_copy(update={"kafka": kafka, "alerting": alerting})
    finally:
        run_sync(delete_topics(stack, wanted))  # the fixture may run inside a test loop


SAMPLE_REGISTRY = Path("devices/registry.yaml").read_text(encoding="utf-8")


async def level(prod: AIOKafkaProducer, settings: Settings, device: str, cm: float) -> int:
    ts = int(time.time() * 1000)
    record = reading(device, "water_level", cm, ts)
    await prod.send_and_wait(settings.kafka.topics.readings, record.value_bytes(), key=record.key())
    return ts


def hook_changes(receiver: HttpReceiver) -> list[str]:
    return [post.body["event"]["change"] for post in receiver.on("/hook")]


@pytest.mark.asyncio
async def test_firing_resolved_firing_again(
    alert_settings: Settings, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> None:
    device = "rtg-rl-t1"
    async with running(alert_settings), producer(alert_settings) as prod:
        for cm, expected in ((262, 1), (230, 2), (271, 3)):
            await level(prod, alert_settings, device, cm)
            await await_for(lambda n=expected: len(http_receiver.on("/hook")) == n, what="webhook")
            await await_for(lambda n=expected: len(smtp_server.received()) == n, what="e-mail")
        # read while the evaluator runs: its Kafka destination delivers on its own schedule
        published = await _alerts_on_kafka(alert_settings, 3)
    assert hook_changes(http_receiver) == ["fired", "resolved", "fired"]
    ids = [post.body["event"]["id"] for post in http_receiver.on("/hook")]
    assert ids == ["sungai/rtg-rl-t1/1", "sungai/rtg-rl-t1/2", "sungai/rtg-rl-t1/3"]
    subjects = [mail["Subject"] for mail in smtp_server.received()]
    assert subjects[0] == "[SIAGA] Tinggi muka air sungai: rtg-rl-t1, Reok"
    assert subjects[1].startswith("[PULIH] Tinggi muka air sungai")
    assert [(e.change.value, e.value) for e in published] == [
        ("fired", 262),
        ("resolved", 230),
        ("fired", 271),
    ]


@pytest.mark.asyncio
async def test_restart_does_not_renotify_a_firing_alert(
    alert_settings: Settings, http_receiver: HttpReceiver
) -> None:
    device = "rtg-rl-t2"
    async with running(alert_settings), producer(alert_settings) as prod:
        await level(prod, alert_settings, device, 262)
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, what="first notification")
    async with running(alert_settings) as again, producer(alert_settings) as prod:
        ts = await level(prod, alert_settings, device, 266)
        store = AlertStore(alert_settings.alerting.state_path(alert_settings.stack.state_dir))
        await await_for(
            lambda: any(s["value_ts_ms"] == ts for _, _, s in store.firing()),
            what="the restarted evaluator to process the new reading",
        )
        assert again.stage.ready.is_set()
        hook_rows = [row for row in store.outbox_summary() if row[0] == "hook"]
        assert hook_rows == [("hook", "sent", 1, None)]  # nothing new queued
        await level(prod, alert_settings, device, 200)
        await await_for(lambda: len(http_receiver.on("/hook")) == 2, what="resolution")
    assert hook_changes(http_receiver) == ["fired", "resolved"]


@pytest.mark.asyncio
async def test_silenced_alert_is_not_sent_until_the_silence_is_expired(
    alert_settings: Settings,
    http_receiver: HttpReceiver,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device = "rtg-rl-t3"
    state_dir = alert_settings.alerting.state_dir
    assert state_dir is not None
    monkeypatch.setenv("KOTAFLOW_ALERTING__STATE_DIR", str(state_dir))
    cli = CliRunner()
    added = cli.invoke(
        cli_app,
        [
            "alerts",
            "silence",
            "add",
            "--device",
            "rtg-rl-t*",
            "--duration",
            "2h",
            "-m",
            "uji",
            "--force",
        ],  # test devices are not in the registry
    )
    assert added.exit_code == 0, added.output
    silence_id = added.output.split()[1]
    async with running(alert_settings), producer(alert_settings) as prod:
        await level(prod, alert_settings, device, 262)
        published = await _alerts_on_kafka(alert_settings, 1)
        assert published[0].silenced_by == silence_id
        store = AlertStore(alert_settings.alerting.state_path(alert_settings.stack.state_dir))
        assert {row[0] for row in store.outbox_summary()} == {"_kafka"}
        assert http_receiver.on("/hook") == []
        assert smtp_server.received() == []
        expired = cli.invoke(cli_app, ["alerts", "silence", "expire", silence_id])
        assert expired.exit_code == 0, expired.output
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, what="notification")
        await await_for(lambda: len(smtp_server.received()) == 1, what="e-mail")
    assert hook_changes(http_receiver) == ["reminder"]


@pytest.mark.asyncio
async def test_unreadable_record_is_dead_lettered_and_the_rest_evaluated(
    alert_settings: Settings, http_receiver: HttpReceiver
) -> None:
    async with running(alert_settings), producer(alert_settings) as prod:
        await prod.send_and_wait(alert_settings.kafka.topics.readings, b'{"v": 99}', key=b"x")
        await level(prod, alert_settings, "rtg-rl-t4", 262)
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, what="notification")
        dead = await _records(alert_settings, alert_settings.kafka.topics.deadletter, 1)
    letter = DeadLetter.from_value(dead[0])
    assert (letter.stage, letter.reason, letter.payload) == (
        "alert",
        Reason.UNSUPPORTED_VERSION,
        b'{"v": 99}',
    )


async def _alerts_on_kafka(settings: Settings, count: int) -> list[AlertEvent]:
    raw = await _records(settings, settings.kafka.topics.alerts, count)
    return [AlertEvent.from_bytes(value) for value in raw]


async def _records(settings: Settings, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(values) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                values += [r.value or b"" for r in records]
    finally:
        await consumer.stop()
    assert len(values) == count, f"{len(values)} records on {topic}, expected {count}"
    return values


@pytest.mark.asyncio
async def test_a_gauges_new_levels_in_the_registry_apply_without_a_restart(
    alert_settings: Settings, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(SAMPLE_REGISTRY, encoding="utf-8")
    settings = alert_settings.model_copy(update={"registry_file": registry})
    entry = '    dev_eui: "24e124641801e07e"\n'  # reo-rl-02's last line: no levels of its own
    own = (
        "    alert_levels:\n      sungai:\n        - {name: Siaga, at_least: 200, clear_below: 190}"
    )
    async with running(settings) as service, producer(settings) as prod:
        await level(prod, settings, "reo-rl-02", 230)  # below the rule's 250: nothing
        registry.write_text(SAMPLE_REGISTRY.replace(entry, entry + own + "\n"), "utf-8")
        await await_for(lambda: service.stage.engine.rules.by_name("sungai").device_levels,
                        what="the registry change to be taken up")  # fmt: skip
        await level(prod, settings, "reo-rl-02", 231)
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, what="the alert")
    (post,) = http_receiver.on("/hook")
    assert (post.body["event"]["change"], post.body["event"]["threshold"]) == ("fired", 200)


@pytest.mark.asyncio
async def test_unusable_device_files_at_start_are_retried_then_their_levels_apply(
    alert_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from processors.alerting import service as service_module

    monkeypatch.setattr(service_module, "REGISTRY_RETRY_S", 0.2)
    registry = tmp_path / "registry.yaml"
    registry.write_text("devices: [this is not a registry", encoding="utf-8")
    settings = alert_settings.model_copy(update={"registry_file": registry})
    async with running(settings) as service:
        assert not service.with_levels
        registry.write_text(SAMPLE_REGISTRY, encoding="utf-8")
        await await_for(lambda: service.with_levels, what="the fixed registry to be taken up")
        assert service.names["reo-rl-02"] == "Jembatan Wae Neuring"
